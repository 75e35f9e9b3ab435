"""How stage 2 runs the frozen backbone on a batch of images (extraction and online).

Three settings that change speed, not the model: channels-last input (exact up to float32
rounding), the batch cut into chunks of :data:`CPU_CHUNK` images on the CPU (each image's
features do not depend on its neighbours in eval mode; the chunks bound the activation
memory of large evaluation batches, e.g. ``train.eval_batch_size`` = 500, and cost no
measurable speed), and, for the cached float16 training views only, bf16 autocast on CPUs
that run bf16 natively (``retrain.extract_dtype=auto``).  Issue 16 asked why extracting
one view took as long as an online epoch: an online epoch *is* one backbone forward per
image plus a head step on 64-d features (under 1% of it), so in the same precision the two
cost the same (1,024 CIFAR-10-LT images, ResNet-32, CPU-seconds, interleaved: 1.92 vs
1.96 s); bf16 extraction is what makes a view cheaper than an epoch (0.84 s, 2.3x), with
the same validation HM of the heads trained on it (docs/PERFORMANCE.md, "Stage 2
extraction").  On an accelerator the batch runs whole.
"""

from __future__ import annotations

import torch
from torch import nn

from nolb.config_stages import EXTRACT_DTYPES
from nolb.errors import NolbError
from nolb.engine.precision import cpu_has_native_bf16

CPU_CHUNK = 64  # images per backbone call on the CPU (bounds activation memory; speed-neutral, measured)


def resolve_extract_dtype(extract_dtype: str, device: str | torch.device) -> str:
    """``"auto"`` -> ``"bfloat16"`` on a CPU with native bf16, else ``"float32"``; explicit values unchanged."""
    if extract_dtype not in EXTRACT_DTYPES:
        raise NolbError(f"retrain.extract_dtype: must be one of {', '.join(EXTRACT_DTYPES)}, got {extract_dtype!r}")
    if extract_dtype != "auto":
        return extract_dtype
    return "bfloat16" if torch.device(device).type == "cpu" and cpu_has_native_bf16() else "float32"


@torch.no_grad()
def backbone_features(backbone: nn.Module, x: torch.Tensor, *, channels_last: bool = True,
                      dtype: str = "float32", chunk: int | None = None) -> torch.Tensor:
    """``backbone(x)`` as float32 ``(B, D)`` features, computed the fast way for ``x``'s device.

    Args:
        backbone: the frozen feature extractor, in eval mode (each image's features must not
            depend on the other images of the batch).
        x: a batch of images already on the backbone's device.
        channels_last: pass 4-d batches in channels-last memory format.
        dtype: ``"float32"`` or ``"bfloat16"`` (autocast; features rounded to about 3 digits).
        chunk: images per backbone call; None: :data:`CPU_CHUNK` on the CPU, the whole batch elsewhere.

    Raises:
        NolbError: the backbone does not return (N, D) features.
    """
    if chunk is None:
        chunk = CPU_CHUNK if x.device.type == "cpu" else len(x)
    chunk = max(int(chunk), 1)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
        parts = [backbone(x[start:start + chunk]) for start in range(0, len(x), chunk)] if len(x) else [backbone(x)]
    feats = parts[0] if len(parts) == 1 else torch.cat(parts)
    if feats.dim() != 2:
        raise NolbError(f"the backbone returned features of shape {tuple(feats.shape)}, expected (N, D)")
    return feats.float()
