"""Mixed precision: autocast contexts and the fp16 gradient scaler, by name; ``auto`` resolved per device."""

from __future__ import annotations

import contextlib
import functools

import torch

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively here (AVX-512-BF16 / AMX): bf16 convolutions and matmuls are then
    fast; elsewhere they are emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` where ``device`` runs bf16 natively (a CUDA GPU that supports it, a CPU with
    AVX-512-BF16 / AMX), else ``"fp32"``; the other names are returned unchanged.

    ``auto`` is for recipes whose network was measured faster in bf16 and whose quality was measured
    with it (``cifar10_lt_cpu``, ``fashion_mnist_lt``: docs/PERFORMANCE.md, "Stage 1 in bf16"); it is not
    the default, because precision changes the numbers (the Fashion-MNIST CNN lost 1.4-1.7 points of
    validation AM in bf16 at 15 epochs, though it tied fp32 at 30), so a recipe opts in once measured.
    """
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16``/``fp16``; a no-op context for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for fp16 (bf16 has fp32's range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
