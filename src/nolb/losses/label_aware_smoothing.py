"""Label-aware smoothing, the stage-2 loss of MiSLAS (Zhong et al., CVPR 2021).

Z. Zhong, J. Cui, S. Liu, J. Jia, "Improving Calibration for Long-Tailed Recognition",
CVPR 2021. Each class gets its own label-smoothing factor eps_c, larger for head classes.
With x_c = (n_c - n_min) / (n_max - n_min) in [0, 1] (x_c = 0 for all classes when every
count is equal) and eps_head, eps_tail the factors of the most and least frequent class:

    concave: eps_c = eps_tail + (eps_head - eps_tail) * sin(pi x_c / 2)
    linear:  eps_c = eps_tail + (eps_head - eps_tail) * x_c
    convex:  eps_c = eps_head + (eps_head - eps_tail) * sin(3 pi / 2 + pi x_c / 2)
    exp:     eps_c = eps_tail + (eps_head - eps_tail) * x_c ** power

and the loss of sample i (log-probabilities l = log softmax(z_i)) is

    l_i = -(1 - eps_{y_i}) l_{y_i} - eps_{y_i} * (1/C) sum_k l_k,    L = mean_i l_i.

MiSLAS uses the concave shape with (eps_head, eps_tail) = (0.4, 0.1) on CIFAR-100-LT
(the defaults here) and (0.3, 0.0) on CIFAR-10-LT and ImageNet-LT.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from nolb.errors import NolbError
from nolb.losses._base import ClassCountLoss
from nolb.losses._checks import check_choice, check_real

__all__ = ["LabelAwareSmoothing", "SMOOTHING_SHAPES"]

SMOOTHING_SHAPES = ("concave", "linear", "convex", "exp")


class LabelAwareSmoothing(ClassCountLoss):
    """Cross-entropy with a per-class label-smoothing factor that grows with n_c.

    Args:
        class_counts: Training images per class, shape (C,) (zeros allowed).
        smooth_head: Smoothing of the most frequent class, in [0, 1].
        smooth_tail: Smoothing of the least frequent class, in [0, 1].
        shape: How the factor moves between them: "concave", "linear", "convex" or "exp".
        power: Exponent of the "exp" shape (> 0); required for it, unused otherwise.
    """

    def __init__(
        self,
        class_counts: Any,
        smooth_head: float = 0.4,
        smooth_tail: float = 0.1,
        shape: str = "concave",
        power: float | None = None,
    ) -> None:
        name = type(self).__name__
        self.smooth_head = check_real(name, "smooth_head", smooth_head, minimum=0.0, maximum=1.0)
        self.smooth_tail = check_real(name, "smooth_tail", smooth_tail, minimum=0.0, maximum=1.0)
        self.shape = check_choice(name, "shape", shape, SMOOTHING_SHAPES)
        if shape == "exp":
            if power is None:
                raise NolbError(f"{name}: shape 'exp' needs the option power (> 0)")
            power = check_real(name, "power", power, minimum=0.0, strict_minimum=True)
        elif power is not None:
            raise NolbError(f"{name}: power applies only to shape 'exp', got shape {shape!r}")
        self.power = power
        super().__init__(class_counts)

    def smoothing(self) -> torch.Tensor:
        """eps_c for every class, shape (C,), float64 on the counts' device."""
        counts = self.class_counts.to(torch.float64)
        span = counts.max() - counts.min()
        x = (counts - counts.min()) / span if span > 0 else torch.zeros_like(counts)
        head, tail = self.smooth_head, self.smooth_tail
        if self.shape == "concave":
            return tail + (head - tail) * torch.sin(x * math.pi / 2)
        if self.shape == "linear":
            return tail + (head - tail) * x
        if self.shape == "convex":
            return head + (head - tail) * torch.sin(1.5 * math.pi + x * math.pi / 2)
        return tail + (head - tail) * x**self.power

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean label-aware-smoothed cross-entropy of a batch.

        Args:
            logits: Scores of shape (N, C), any floating dtype (computed in >= fp32).
            target: Class indices of shape (N,).

        Returns:
            The scalar loss.
        """
        logits = self._check(logits, target)
        target = target.long()
        eps = self.smoothing().to(logits.dtype)[target]
        log_probs = F.log_softmax(logits, dim=1)
        nll = -log_probs.gather(1, target[:, None]).squeeze(1)
        uniform = -log_probs.mean(dim=1)
        return ((1.0 - eps) * nll + eps * uniform).mean()

    def extra_repr(self) -> str:
        extra = f", power={self.power:g}" if self.power is not None else ""
        return f"smooth_head={self.smooth_head:g}, smooth_tail={self.smooth_tail:g}, shape={self.shape!r}{extra}"
