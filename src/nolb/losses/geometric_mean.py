"""The Geometric Mean Loss (GML) of "No One Left Behind" (Du & Wu, CVPR 2023).

Y. Du, J. Wu, "No One Left Behind: Improving the Worst Categories in Long-Tailed
Learning", CVPR 2023 (arXiv 2303.03630). GML maximises the geometric mean of the per-class
(soft) recalls of a batch, a tractable surrogate of the harmonic mean, and is used in
stage 2 to re-train a new linear classifier on a frozen backbone.

For a batch B with logits z_i, labels y_i, training counts n and prior strength tau:

1. Re-weighted softmax (max-subtracted), clamped to [1e-5, 1]:

       p~_{i,j} = clamp( n_j^tau exp(z_{i,j}) / sum_k n_k^tau exp(z_{i,k}), 1e-5, 1 ),

   i.e. softmax(z_i + tau log n). tau = 1 is the paper's re-weighting (the Balanced Softmax
   correction); tau = 0 the plain softmax.
2. For each class c in C_B, the classes present in the batch (B_c its samples):

       "mean_then_log" (the paper):  l_c = -log( (1/|B_c|) sum_{i in B_c} p~_{i,c} )
       "log_then_mean" (ablation):   l_c = (1/|B_c|) sum_{i in B_c} -log p~_{i,c}

   By Jensen's inequality log_then_mean >= mean_then_log.
3. The power mean over present classes; absent classes contribute nothing:

       L = ( (1/|C_B|) sum_{c in C_B} l_c^p )^{1/p}.

   p = 1 (the default) is GML: L = -(1/|C_B|) sum_c log r_c = -log of the geometric mean
   of the soft recalls r_c. p > 1 weighs the worst classes more (p -> infinity tends to
   max_c l_c = -log of the lowest soft recall); 0 < p < 1 weighs them less. This is the
   "generalized mean" form of ``ReweightedGMLLogAfterMean`` in the same group's public code
   (github.com/yuhao318/BTM, ``methods.py``), which the paper's GML is the p = 1 case of.
   For p != 1 the loss is not differentiable where every l_c = 0 (all r_c = 1).

The clamp stops gradients through probabilities below 1e-5 (as in the reference code), so
extreme logits give a finite loss and finite gradients.

Prediction uses the raw logits z, without + tau log n: the prior only corrects the
training objective for the long-tailed label distribution.
"""

from __future__ import annotations

from typing import Any

import torch

from nolb.losses._base import ClassCountLoss
from nolb.losses._checks import check_choice, check_real

__all__ = ["GeometricMeanLoss", "GML_AGGREGATES", "PROBABILITY_FLOOR"]

GML_AGGREGATES = ("mean_then_log", "log_then_mean")
PROBABILITY_FLOOR = 1e-5


class GeometricMeanLoss(ClassCountLoss):
    """Geometric Mean Loss: -log of the geometric mean of the batch's per-class soft recalls.

    Args:
        class_counts: Training images per class, shape (C,); every count >= 1 when
            ``prior_strength > 0``.
        prior_strength: tau >= 0 in softmax(z + tau log n); 1 is the paper, 0 plain softmax.
        aggregate: "mean_then_log" (the paper: log of the class-mean probability) or
            "log_then_mean" (class mean of the log-probabilities).
        power: p > 0 of the power mean over classes; 1 is GML.
    """

    def __init__(
        self,
        class_counts: Any,
        prior_strength: float = 1.0,
        aggregate: str = "mean_then_log",
        power: float = 1.0,
    ) -> None:
        name = type(self).__name__
        self.prior_strength = check_real(name, "prior_strength", prior_strength, minimum=0.0)
        self.aggregate = check_choice(name, "aggregate", aggregate, GML_AGGREGATES)
        self.power = check_real(name, "power", power, minimum=0.0, strict_minimum=True)
        super().__init__(class_counts, positive_counts=self.prior_strength > 0)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """GML of a batch.

        Args:
            logits: Scores of shape (N, C), any floating dtype (computed in >= fp32).
            target: Class indices of shape (N,).

        Returns:
            The scalar loss.
        """
        logits = self._check(logits, target)
        target = target.long()
        if self.prior_strength != 0.0:
            logits = logits + self.prior_strength * self._log_counts_as(logits)
        # softmax subtracts the row max before exponentiating.
        # Only p~_{i,y_i} is used: clamping after the gather gives the same values and the
        # same gradients as clamping the whole (N, C) matrix, without an (N, C) clamp and
        # its (N, C) backward mask (half the cost of the loss on 1,000 classes).
        probs = torch.softmax(logits, dim=1)
        p_true = probs.gather(1, target[:, None]).squeeze(1).clamp(PROBABILITY_FLOOR, 1.0)
        per_sample = p_true if self.aggregate == "mean_then_log" else -torch.log(p_true)

        num_classes = self.num_classes
        # index_add rather than bincount: no host sync on accelerators.
        class_size = torch.zeros(num_classes, dtype=torch.int64, device=target.device)
        class_size = class_size.index_add(0, target, torch.ones_like(target))
        present = class_size > 0
        class_sum = torch.zeros(num_classes, dtype=logits.dtype, device=logits.device)
        class_sum = class_sum.index_add(0, target, per_sample)
        class_mean = class_sum / class_size.clamp_min(1).to(logits.dtype)
        if self.aggregate == "mean_then_log":
            # Absent classes get r_c := 1, i.e. l_c = 0, and no gradient.
            per_class = -torch.log(torch.where(present, class_mean, torch.ones_like(class_mean)))
        else:
            per_class = class_mean  # exactly 0 for absent classes
        num_present = present.sum().to(logits.dtype)
        if self.power == 1.0:
            return per_class.sum() / num_present
        powered = torch.where(present, per_class, torch.ones_like(per_class)) ** self.power
        powered = torch.where(present, powered, torch.zeros_like(powered))
        return (powered.sum() / num_present) ** (1.0 / self.power)

    def extra_repr(self) -> str:
        return f"prior_strength={self.prior_strength:g}, aggregate={self.aggregate!r}, power={self.power:g}"
