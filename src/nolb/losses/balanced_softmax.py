"""Balanced Softmax cross-entropy (BSCE; Ren et al., NeurIPS 2020).

J. Ren, C. Yu, S. Sheng, X. Ma, H. Zhao, S. Yi, H. Li, "Balanced Meta-Softmax for
Long-Tailed Visual Recognition", NeurIPS 2020. Cross-entropy on the logits shifted by the
log training counts:

    L = mean_i -log( n_{y_i} exp(z_{i,y_i}) / sum_k n_k exp(z_{i,k}) )
      = mean_i CE(z_i + log n, y_i).

The shift undoes the label-frequency bias of the long-tailed training set, so the raw
logits z (without + log n) estimate the balanced posterior: predict with argmax z.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nolb.losses._base import ClassCountLoss

__all__ = ["BalancedSoftmaxLoss"]


class BalancedSoftmaxLoss(ClassCountLoss):
    """Balanced Softmax loss: cross-entropy on ``logits + log(class_counts)``.

    Args:
        class_counts: Training images per class, shape (C,), every count >= 1.
    """

    def __init__(self, class_counts: Any) -> None:
        super().__init__(class_counts, positive_counts=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean balanced-softmax cross-entropy of a batch.

        Args:
            logits: Scores of shape (N, C), any floating dtype (computed in >= fp32).
            target: Class indices of shape (N,).

        Returns:
            The scalar loss.
        """
        logits = self._check(logits, target)
        return F.cross_entropy(logits + self._log_counts_as(logits), target.long())
