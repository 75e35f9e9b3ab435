"""LDAM loss with the optional DRW schedule (Cao et al., NeurIPS 2019).

K. Cao, C. Wei, A. Gaidon, N. Arechiga, T. Ma, "Learning Imbalanced Datasets with
Label-Distribution-Aware Margin Loss", NeurIPS 2019 (code: kaidic/LDAM-DRW).

The model's logits are cosines z_{i,k} = cos(theta_{i,k}) from a normed linear head. The
true class is pushed back by a margin that grows toward the tail,

    Delta_c = K / n_c^{1/4},   K chosen so that max_c Delta_c = max_margin (0.5),

and the scale s is applied inside the loss:

    L = sum_i w_{y_i} CE(s * (z_i - Delta_{y_i} e_{y_i}), y_i) / sum_i w_{y_i}.

Deferred re-weighting (DRW): w = 1 before epoch ``drw_epoch`` and, from that epoch on, the
class-balanced weights of Cui et al. (effective number, ``beta`` = 0.9999, summing to C).
The trainer announces the epoch with :meth:`LDAMLoss.set_epoch` (0-based, as in the
reference code where epochs 160..199 of 200 are re-weighted). Predict with argmax z.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F

from nolb.errors import NolbError
from nolb.losses._base import ClassCountLoss
from nolb.losses._checks import check_real
from nolb.losses.class_balanced import class_balanced_weights

__all__ = ["LDAMLoss"]


class LDAMLoss(ClassCountLoss):
    """Label-distribution-aware margin loss, with deferred re-weighting if ``drw_epoch`` is set.

    Args:
        class_counts: Training images per class, shape (C,), every count >= 1.
        max_margin: The largest margin (that of the rarest class), > 0; 0.5 in the paper.
        scale: The logit scale s applied inside the loss, > 0; 30 in the reference code.
        drw_epoch: First (0-based) epoch with class-balanced weights; None never re-weights.
        beta: Effective-number hyper-parameter of the DRW weights, in [0, 1).
    """

    drw_weights: torch.Tensor

    def __init__(
        self,
        class_counts: Any,
        max_margin: float = 0.5,
        scale: float = 30.0,
        drw_epoch: int | None = None,
        beta: float = 0.9999,
    ) -> None:
        name = type(self).__name__
        self.max_margin = check_real(name, "max_margin", max_margin, minimum=0.0, strict_minimum=True)
        self.scale = check_real(name, "scale", scale, minimum=0.0, strict_minimum=True)
        self.beta = check_real(name, "beta", beta, minimum=0.0, maximum=1.0, strict_maximum=True)
        if drw_epoch is not None and (
            isinstance(drw_epoch, bool) or not isinstance(drw_epoch, numbers.Integral) or drw_epoch < 0
        ):
            raise NolbError(f"{name}: drw_epoch must be an integer >= 0 or None, got {drw_epoch!r}")
        super().__init__(class_counts, positive_counts=True)
        self.register_buffer(
            "drw_weights", class_balanced_weights(self.class_counts, self.beta, dtype=torch.float64), persistent=False
        )
        self.drw_epoch = None if drw_epoch is None else int(drw_epoch)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Announce the current (0-based) epoch; re-weighting starts at ``drw_epoch``."""
        self.epoch = int(epoch)

    @property
    def reweighting(self) -> bool:
        """True when the DRW class weights apply in the current epoch."""
        return self.drw_epoch is not None and self.epoch >= self.drw_epoch

    def margins(self) -> torch.Tensor:
        """Delta_c = max_margin * (min_k n_k / n_c)^{1/4}, shape (C,), float64 on the counts' device."""
        counts = self.class_counts.to(torch.float64)
        return self.max_margin * (counts.min() / counts) ** 0.25

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The (possibly re-weighted) LDAM loss of a batch.

        Args:
            logits: Cosine logits of shape (N, C), any floating dtype (computed in >= fp32).
            target: Class indices of shape (N,).

        Returns:
            The scalar loss.
        """
        logits = self._check(logits, target)
        target = target.long()
        margin = self.margins().to(logits.dtype)[target]
        shifted = logits.scatter_add(1, target[:, None], -margin[:, None])
        weight = None
        if self.reweighting:
            weight = self.drw_weights.to(logits.dtype)
        return F.cross_entropy(self.scale * shifted, target, weight=weight)

    def extra_repr(self) -> str:
        return f"max_margin={self.max_margin:g}, scale={self.scale:g}, drw_epoch={self.drw_epoch}, beta={self.beta:g}"
