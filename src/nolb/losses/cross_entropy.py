"""Cross-entropy, optionally class-weighted: the plain stage-1 baseline.

For logits z_i and label y_i,

    l_i = -log softmax(z_i)_{y_i},    L = sum_i w_{y_i} l_i / sum_i w_{y_i},

with w = 1 unless per-class weights are given (the normalisation of
``torch.nn.functional.cross_entropy``). With :func:`class_balanced_weights` as ``weight``
this is the softmax class-balanced loss of Cui et al. (CVPR 2019), the factory's ``"cb"``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nolb.losses._base import ClassCountLoss, as_class_weights

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(ClassCountLoss):
    """Softmax cross-entropy with optional per-class weights.

    Args:
        class_counts: Training images per class, shape (C,) (only C is used here; zero
            counts are allowed).
        weight: Optional per-class weights, shape (C,), each > 0.
    """

    class_weights: torch.Tensor | None

    def __init__(self, class_counts: Any, weight: Any = None) -> None:
        super().__init__(class_counts)
        self.register_buffer("class_weights", as_class_weights(weight, owner=self._name, num_classes=self.num_classes))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean (or weighted mean) cross-entropy of a batch.

        Args:
            logits: Scores of shape (N, C), any floating dtype (computed in >= fp32).
            target: Class indices of shape (N,).

        Returns:
            The scalar loss.
        """
        logits = self._check(logits, target)
        weight = None if self.class_weights is None else self.class_weights.to(logits.dtype)
        return F.cross_entropy(logits, target.long(), weight=weight)
