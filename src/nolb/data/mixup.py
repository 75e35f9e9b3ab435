"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch, as MiSLAS stage 1 uses them.

Mixup: ``lam ~ Beta(alpha, alpha)``, a random permutation ``pi`` of the batch, and
``x' = lam * x + (1 - lam) * x[pi]``; the loss is
``lam * L(f(x'), y) + (1 - lam) * L(f(x'), y[pi])`` (:func:`mixed_loss`).
CutMix pastes a box of ``x[pi]`` covering a fraction ``1 - lam`` of the image and
re-sets ``lam`` to the area actually kept.  ``alpha <= 0`` disables both (``lam = 1``).
MiSLAS uses mixup with alpha 1.0 on CIFAR and 0.2 on ImageNet/Places.
"""

from __future__ import annotations

import numpy as np
import torch


def _draw_lam_and_perm(n: int, alpha: float, generator: torch.Generator | None, device) -> tuple[float, torch.Tensor]:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(n, generator=generator).to(device)
    return lam, perm


def mixup_batch(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator | None = None):
    """Mix a batch with a permutation of itself.

    Args:
        x: ``(N, ...)`` float inputs.
        y: ``(N,)`` labels.
        alpha: Beta(alpha, alpha) parameter; ``<= 0`` returns the batch unchanged.
        generator: CPU ``torch.Generator`` driving ``lam`` and the permutation.

    Returns:
        ``(x_mixed, y_a, y_b, lam)`` with ``y_a = y`` and ``y_b = y[pi]``.
    """
    if alpha <= 0:
        return x, y, y, 1.0
    lam, perm = _draw_lam_and_perm(x.shape[0], alpha, generator, x.device)
    return lam * x + (1.0 - lam) * x[perm], y, y[perm], lam


def cutmix_batch(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator | None = None):
    """Paste a random box of a permuted batch into ``x`` (``(N, C, H, W)``).

    Returns:
        ``(x_mixed, y_a, y_b, lam)`` where ``lam`` is the fraction of pixels kept from ``x``.
    """
    if alpha <= 0:
        return x, y, y, 1.0
    lam, perm = _draw_lam_and_perm(x.shape[0], alpha, generator, x.device)
    h, w = x.shape[-2:]
    cut = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * cut), int(w * cut)
    cy, cx = (int(v) for v in torch.randint(0, 1 << 30, (2,), generator=generator) % torch.tensor([h, w]))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / float(h * w)
    return mixed, y, y[perm], lam


def mixed_loss(criterion, logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float) -> torch.Tensor:
    """``lam * criterion(logits, y_a) + (1 - lam) * criterion(logits, y_b)``."""
    return lam * criterion(logits, y_a) + (1.0 - lam) * criterion(logits, y_b)
