"""The deployed network: images in, class probabilities out (one head or the two-head ensemble).

``forward(x)`` returns ``(N, C)`` probabilities.  For an ensemble (METHOD.md section 5) the
original head gives ``z1``, the re-trained head ``z2``, both on one backbone pass, and

    prob space:  p = ( softmax(z1 / T1) + softmax(z2 / T2) ) / 2
    log space:   p = softmax( ( log_softmax(z1 / T1) + log_softmax(z2 / T2) ) / 2 )

the same formulas as :func:`nolb.retrain.ensemble.ensemble_log_probs`, written here with
plain tensor operations so that the whole computation exports to ONNX and torch.export.
``all_probabilities(x)`` also returns each head's own probabilities (``softmax(z / T)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DeployedClassifier(nn.Module):
    """A backbone with one head, or with the original and a re-trained head.

    Args:
        backbone: maps images to (N, D) features.
        original_head: the classifier of the base model (or the only head).
        new_head: the re-trained head (ensemble), or None.
        t1, t2: temperatures of the original and the new head.
        space: ``"prob"`` or ``"log"`` averaging (ensemble only).
    """

    def __init__(self, backbone: nn.Module, original_head: nn.Module, new_head: nn.Module | None = None,
                 t1: float = 1.0, t2: float = 1.0, space: str = "prob") -> None:
        super().__init__()
        self.backbone, self.original_head, self.new_head = backbone, original_head, new_head
        self.t1, self.t2, self.space = float(t1), float(t2), space

    @property
    def is_ensemble(self) -> bool:
        return self.new_head is not None

    def all_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(p,)`` for one head; ``(p, p_original, p_new)`` for an ensemble, each (N, C) float32."""
        features = self.backbone(x)
        z1 = self.original_head(features).float()
        if self.new_head is None:
            return (F.softmax(z1 / self.t1, dim=1),)
        z2 = self.new_head(features).float()
        log1, log2 = F.log_softmax(z1 / self.t1, dim=1), F.log_softmax(z2 / self.t2, dim=1)
        p1, p2 = log1.exp(), log2.exp()
        p = (p1 + p2) / 2 if self.space == "prob" else F.softmax((log1 + log2) / 2, dim=1)
        return p, p1, p2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.all_probabilities(x)[0]

    def extra_repr(self) -> str:
        if self.new_head is None:
            return "single head"
        return f"ensemble: t1={self.t1}, t2={self.t2}, space={self.space!r}"


class AllOutputs(nn.Module):
    """Wraps a :class:`DeployedClassifier` so ``forward`` returns every output (for export)."""

    def __init__(self, classifier: DeployedClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.classifier.all_probabilities(x)
