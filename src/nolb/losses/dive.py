"""Distilling virtual examples (DiVE; He, Wu, Wei, ICCV 2021).

Y.-Y. He, J. Wu, X.-S. Wei, "Distilling Virtual Examples for Long-tailed Recognition",
ICCV 2021.  A teacher trained with Balanced Softmax CE (BSCE) predicts a distribution for
each training image; read as "virtual examples" of every class, it is flattened so that
tail classes receive more of them, and the student distils it while also fitting BSCE:

    p~_t = softmax(z_t / tau) ** p / sum_c softmax(z_t / tau)_c ** p     (power normalisation)
    L = (1 - lam) BSCE(z_s, y) + lam tau^2 KL(p~_t || softmax(z_s / tau))

with tau the distillation temperature, p < 1 the power that flattens the teacher's
distribution and lam the distillation weight (defaults tau = 3, p = 0.5, lam = 0.5; see the
recipe files for the sources).  Since softmax(z / tau) ** p renormalised is softmax(p z / tau),
the order of softening and power does not matter: the teacher is read at temperature tau / p
(6 by default) while the student's softmax and the tau^2 factor use tau (3); the label term is
BSCE, not plain CE.  KL is summed over classes and averaged over the batch.
The teacher's logits come from the same augmented batch; they carry no gradient.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nolb.errors import NolbError
from nolb.losses._base import ClassCountLoss
from nolb.losses._checks import check_real

__all__ = ["DiVELoss"]


class DiVELoss(ClassCountLoss):
    """BSCE plus distillation of the teacher's temperature-softened, power-normalised output.

    Args:
        class_counts: Training images per class, shape (C,), every count >= 1.
        temperature: tau, > 0.
        power: p in (0, 1] flattens the teacher's distribution (1: plain distillation).
        weight: lam in [0, 1], the share of the distillation term.
        teacher: The teacher's run directory (used by the training step, not here).
    """

    def __init__(self, class_counts: Any, temperature: float = 3.0, power: float = 0.5, weight: float = 0.5,
                 teacher: str | None = None) -> None:
        super().__init__(class_counts, positive_counts=True)
        name = self._name
        self.temperature = check_real(name, "temperature", temperature, minimum=0.0, strict_minimum=True)
        self.power = check_real(name, "power", power, minimum=0.0, maximum=1.0, strict_minimum=True)
        self.weight = check_real(name, "weight", weight, minimum=0.0, maximum=1.0)
        self.teacher = None if teacher is None else str(teacher)

    def virtual_examples(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """p~_t, the teacher's softened and power-normalised distribution, (N, C), no gradient."""
        soft = torch.softmax(teacher_logits.detach() / self.temperature, dim=1)
        flat = soft.pow(self.power)
        return flat / flat.sum(dim=1, keepdim=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The DiVE loss of a batch.

        Args:
            logits: Student scores, (N, C).
            target: Labels, (N,).
            teacher_logits: The teacher's scores on the same images, (N, C).

        Returns:
            The scalar loss.
        """
        logits = self._check(logits, target)
        teacher_logits = teacher_logits.to(logits.dtype)
        if teacher_logits.shape != logits.shape:
            raise NolbError(f"{self._name}: teacher_logits {tuple(teacher_logits.shape)} must match the "
                             f"student's {tuple(logits.shape)}")
        with torch.autocast(logits.device.type, enabled=False):  # fp32 (or fp64) under AMP too
            bsce = F.cross_entropy(logits + self._log_counts_as(logits), target.long())
            log_student = F.log_softmax(logits / self.temperature, dim=1)
            distill = F.kl_div(log_student, self.virtual_examples(teacher_logits), reduction="batchmean")
            return (1.0 - self.weight) * bsce + self.weight * self.temperature ** 2 * distill
