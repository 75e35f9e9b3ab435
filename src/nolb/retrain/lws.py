"""Learnable weight scaling (LWS; Kang et al., ICLR 2020).

The original classifier is frozen and only one scale per class is learnt:

    z_c = s_c (<w_c, x> + b_c),     s initialised to 1,

trained with cross-entropy and class-balanced sampling.  The result folds back into a
plain ``nn.Linear`` with weights ``s_c w_c`` and bias ``s_c b_c``.  A limit of the
parametrisation, not of training: a positive scale cannot lift a class whose own logit
``<w_c, x> + b_c`` is negative on its images, so such a class of the base model keeps a
recall near zero under LWS whatever the lr or epochs (cRT, GML and tau-norm can fix it).
"""

from __future__ import annotations

import torch
from torch import nn


class LearnableWeightScaling(nn.Module):
    """A frozen linear head times learnable per-class scales.

    Args:
        head: the original ``nn.Linear`` classifier (copied and frozen).
    """

    def __init__(self, head: nn.Linear) -> None:
        super().__init__()
        weight = head.weight.detach().float().cpu().clone()
        bias = head.bias.detach().float().cpu().clone() if head.bias is not None else torch.zeros(weight.shape[0])
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.scales = nn.Parameter(torch.ones(weight.shape[0]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scales * (features @ self.weight.t() + self.bias)

    def to_linear(self) -> nn.Linear:
        """The equivalent ``nn.Linear`` (weights ``s_c w_c``, bias ``s_c b_c``)."""
        head = nn.Linear(self.weight.shape[1], self.weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(self.scales.detach()[:, None] * self.weight)
            head.bias.copy_(self.scales.detach() * self.bias)
        return head
