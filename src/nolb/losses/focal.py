"""Softmax focal loss (Lin et al., ICCV 2017), optionally class-weighted.

T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollar, "Focal Loss for Dense Object
Detection", ICCV 2017, in its multi-class softmax form. With p_t = softmax(z_i)_{y_i},

    l_i = -(1 - p_t)^gamma log p_t,    L = sum_i w_{y_i} l_i / sum_i w_{y_i},

w = 1 unless per-class weights are given. gamma = 0 is cross-entropy. With
:func:`class_balanced_weights` as ``weight`` this is the softmax class-balanced focal loss
of Cui et al. (CVPR 2019), the factory's ``"cb_focal"``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nolb.losses._base import ClassCountLoss, as_class_weights, weighted_mean
from nolb.losses._checks import check_real

__all__ = ["FocalLoss"]

# (1 - p_t) is floored here so that d/dp (1 - p)^gamma stays finite when p_t rounds to 1
# and gamma < 1; the floored term multiplies -log p_t ~ 0, so the loss value is unchanged.
_ONE_MINUS_P_FLOOR = 1e-12


class FocalLoss(ClassCountLoss):
    """Multi-class focal loss.

    Args:
        class_counts: Training images per class, shape (C,) (only C is used; zeros allowed).
        gamma: Focusing parameter, >= 0 (Lin et al. use 2 for detection; 1 is common for
            long-tailed classification, as in LDAM-DRW's baseline).
        weight: Optional per-class weights, shape (C,), each > 0.
    """

    class_weights: torch.Tensor | None

    def __init__(self, class_counts: Any, gamma: float = 1.0, weight: Any = None) -> None:
        self.gamma = check_real(type(self).__name__, "gamma", gamma, minimum=0.0)
        super().__init__(class_counts)
        self.register_buffer("class_weights", as_class_weights(weight, owner=self._name, num_classes=self.num_classes))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean (or weighted mean) focal loss of a batch.

        Args:
            logits: Scores of shape (N, C), any floating dtype (computed in >= fp32).
            target: Class indices of shape (N,).

        Returns:
            The scalar loss.
        """
        logits = self._check(logits, target)
        target = target.long()
        log_p_true = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        one_minus_p = (-torch.expm1(log_p_true)).clamp_min(_ONE_MINUS_P_FLOOR)
        per_sample = -(one_minus_p**self.gamma) * log_p_true
        return weighted_mean(per_sample, target, self.class_weights)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma:g}, weighted={self.class_weights is not None}"
