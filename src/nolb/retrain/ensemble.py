"""Stage 3: the two-head ensemble (METHOD.md section 5).

The original head (logits ``z1``) and the re-trained head (``z2``) share one backbone
pass.  Probability-space average (the paper's):

    p = ( softmax(z1 / T1) + softmax(z2 / T2) ) / 2,

computed as ``log p = logsumexp(log_softmax(z1/T1), log_softmax(z2/T2)) - log 2``.
Log-space average (for comparison): ``p ∝ exp((log_softmax(z1/T1) + log_softmax(z2/T2)) / 2)``.
The model returns ``log p`` (so ``argmax`` predicts and ``nll_loss`` works).
"""

from __future__ import annotations

import math
from itertools import product
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nolb.errors import NolbError
from nolb.config_stages import ENSEMBLE_SPACES
from nolb.progress import Progress
from nolb.retrain.scoring import ValScore, validation_score


def ensemble_log_probs(
    z1: torch.Tensor, z2: torch.Tensor, t1: float = 1.0, t2: float = 1.0, space: str = "prob"
) -> torch.Tensor:
    """Log-probabilities of the two-head ensemble.

    Args:
        z1: (N, C) logits of the original head.
        z2: (N, C) logits of the re-trained head.
        t1, t2: the temperatures (> 0).
        space: ``"prob"`` (average of probabilities) or ``"log"`` (normalised geometric mean).

    Returns:
        (N, C) float32 log-probabilities.
    """
    if not all(math.isfinite(t) and t > 0 for t in (t1, t2)):
        raise NolbError(f"ensemble: temperatures must be positive finite numbers, got t1={t1}, t2={t2}")
    if space not in ENSEMBLE_SPACES:
        raise NolbError(f"ensemble.space: unknown value {space!r}, expected one of {ENSEMBLE_SPACES}")
    log1 = F.log_softmax(z1.float() / t1, dim=1)
    log2 = F.log_softmax(z2.float() / t2, dim=1)
    if space == "prob":
        return torch.logaddexp(log1, log2) - math.log(2.0)
    return F.log_softmax((log1 + log2) / 2, dim=1)


class Ensemble(nn.Module):
    """One backbone pass, two heads, temperature-scaled average.

    Args:
        backbone: maps images to (N, D) features (see :func:`nolb.retrain.backbone.split_classifier`).
        original_head: the stage-1 classifier (z1).
        new_head: the re-trained classifier (z2).
        t1, t2: temperatures of the two heads.
        space: ``"prob"`` or ``"log"`` averaging.
    """

    def __init__(
        self, backbone: nn.Module, original_head: nn.Module, new_head: nn.Module,
        t1: float = 1.0, t2: float = 1.0, space: str = "prob",
    ) -> None:
        super().__init__()
        ensemble_log_probs(torch.zeros(1, 1), torch.zeros(1, 1), t1, t2, space)  # validates
        self.backbone = backbone
        self.original_head = original_head
        self.new_head = new_head
        self.t1, self.t2, self.space = float(t1), float(t2), space

    def forward_heads(self, features: torch.Tensor) -> torch.Tensor:
        """Ensemble log-probabilities from (N, D) features."""
        return ensemble_log_probs(self.original_head(features), self.new_head(features), self.t1, self.t2, self.space)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_heads(self.backbone(x))

    def extra_repr(self) -> str:
        return f"t1={self.t1}, t2={self.t2}, space={self.space!r}"


@dataclass
class TemperatureChoice:
    """The outcome of :func:`select_temperatures`: the chosen pair, its score, the whole grid."""

    t1: float
    t2: float
    score: ValScore
    table: list[dict] = field(default_factory=list)


def select_temperatures(
    z1_val: torch.Tensor,
    z2_val: torch.Tensor,
    labels_val: torch.Tensor,
    num_classes: int,
    grid: Sequence[float] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
    space: str = "prob",
) -> TemperatureChoice:
    """Choose (T1, T2) on the grid that maximises validation HM (ties: AM, then the
    pair nearest to (1, 1) in log-distance, then the first in grid order).

    Only validation logits enter here: pass the validation split, never the test split.

    Args:
        z1_val, z2_val: (N, C) validation logits of the original and the new head.
        labels_val: (N,) validation labels.
        num_classes: C.
        grid: candidate temperatures for each of T1 and T2.
        space: ``"prob"`` or ``"log"``.

    Returns:
        A :class:`TemperatureChoice`.
    """
    if not grid:
        raise NolbError("ensemble.temperature_grid: empty")
    best = None
    table = []
    with Progress(len(grid) ** 2, desc="stage 3: temperatures", unit="pair") as bar:
        for t1, t2 in product(grid, grid):
            score = validation_score(ensemble_log_probs(z1_val, z2_val, t1, t2, space), labels_val, num_classes)
            table.append({"t1": float(t1), "t2": float(t2), **score.to_dict()})
            key = (score.hm, score.am, -(abs(math.log(t1)) + abs(math.log(t2))))
            if best is None or key > best[0]:
                best = (key, float(t1), float(t2), score)
            bar.update(1, best=f"T1 {best[1]} T2 {best[2]} HM {best[3].hm:.4f}")
    return TemperatureChoice(t1=best[1], t2=best[2], score=best[3], table=table)
