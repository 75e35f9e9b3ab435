"""Post-hoc tau-normalisation of a linear classifier (Kang et al., ICLR 2020).

Each class weight vector is rescaled by a power of its norm and the bias dropped:

    w~_c = w_c / ||w_c||_2 ** tau,      z_c = <w~_c, x>.

``tau = 0`` keeps the weights (bias removed), ``tau = 1`` gives unit-norm weights (a cosine
classifier up to the feature norm).  Head classes grow large weight norms on long-tailed
data, so tau > 0 lifts tail classes.  ``tau`` is chosen on the validation split.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nolb.retrain.scoring import Criterion, ValScore, head_logits, validation_score

DEFAULT_TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))  # 0.0, 0.1, ..., 2.0


def tau_normalized_head(head: nn.Linear, tau: float) -> nn.Linear:
    """A new bias-free ``nn.Linear`` with weights ``w_c / ||w_c|| ** tau``.

    Args:
        head: the trained linear classifier (left unchanged).
        tau: the normalisation power (>= 0).

    Returns:
        The normalised head (bias zero, so it stays a drop-in ``nn.Linear``).
    """
    weight = head.weight.detach().float().cpu()
    norms = weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
    new = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        new.weight.copy_(weight / norms.pow(tau))
        new.bias.zero_()
    return new


def select_tau(
    head: nn.Linear,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    num_classes: int,
    grid: Sequence[float] = DEFAULT_TAU_GRID,
    criterion: Criterion | None = None,
) -> tuple[float, ValScore, list[dict]]:
    """Choose tau on the validation split by ``criterion`` (default: arg-max HM, ties AM),
    ties to the smaller tau.

    Returns:
        (tau, its validation score, one dict per candidate).
    """
    criterion = criterion or Criterion(num_classes, soft=False)
    table = []
    best = None
    for tau in grid:
        logits = head_logits(tau_normalized_head(head, tau), val_features)
        key = criterion.key(logits, val_labels)
        score = validation_score(logits, val_labels, num_classes)
        table.append({"tau": float(tau), **score.to_dict()})
        if best is None or key > best[0]:
            best = (key, float(tau), score)
    return best[1], best[2], table
