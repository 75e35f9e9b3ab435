"""Logit-adjusted cross-entropy (Menon et al., ICLR 2021).

A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit, S. Kumar, "Long-tail learning
via logit adjustment", ICLR 2021. With the training label prior pi_c = n_c / sum_k n_k
and temperature tau >= 0,

    L = mean_i CE(z_i + tau log pi, y_i).

tau = 1 equals Balanced Softmax (log pi and log n differ by a constant per row, which the
softmax ignores); tau = 0 is plain cross-entropy. Predict with argmax z.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nolb.losses._base import ClassCountLoss
from nolb.losses._checks import check_real

__all__ = ["LogitAdjustedLoss"]


class LogitAdjustedLoss(ClassCountLoss):
    """Cross-entropy on ``logits + tau * log(pi)``, pi the training label frequencies.

    Args:
        class_counts: Training images per class, shape (C,); every count >= 1 when
            ``tau > 0``.
        tau: Strength of the adjustment, >= 0 (Menon et al. use 1).
    """

    def __init__(self, class_counts: Any, tau: float = 1.0) -> None:
        tau = check_real(type(self).__name__, "tau", tau, minimum=0.0)
        super().__init__(class_counts, positive_counts=tau > 0)
        self.tau = tau

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean logit-adjusted cross-entropy of a batch.

        Args:
            logits: Scores of shape (N, C), any floating dtype (computed in >= fp32).
            target: Class indices of shape (N,).

        Returns:
            The scalar loss.
        """
        logits = self._check(logits, target)
        if self.tau != 0.0:
            counts = self._counts_as(logits)
            logits = logits + self.tau * torch.log(counts / counts.sum())
        return F.cross_entropy(logits, target.long())

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}"
