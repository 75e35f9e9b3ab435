"""Classifier heads: the plain linear layer and the cosine (normed linear) head of LDAM.

Every nolb model ends in a replaceable ``classifier`` attribute holding one of these, so
stage 2 can swap in a new head on a frozen backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEAD_NAMES = ("linear", "cosine")


class NormedLinear(nn.Module):
    """Cosine classifier: ``z_c = <f / ||f||, w_c / ||w_c||>``, so every logit lies in [-1, 1].

    Used by LDAM-DRW (Cao et al. 2019), whose loss multiplies the cosines by a scale ``s``.
    The weight has the ``nn.Linear`` layout ``(out_features, in_features)`` so a head
    trained here can initialise a linear head of the same shape; there is no bias.

    Args:
        in_features: Feature dimension D.
        out_features: Number of classes C.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.uniform_(self.weight, -1.0, 1.0)
        with torch.no_grad():
            self.weight.renorm_(2, 0, 1e-5).mul_(1e5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).t()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def build_head(kind: str, in_features: int, num_classes: int) -> nn.Module:
    """A classifier head by name.

    Args:
        kind: ``"linear"`` (``nn.Linear`` with bias) or ``"cosine"`` (:class:`NormedLinear`).
        in_features: Feature dimension D.
        num_classes: Number of classes C.

    Returns:
        The head module mapping (N, D) features to (N, C) logits.
    """
    if kind == "linear":
        return nn.Linear(in_features, num_classes)
    if kind == "cosine":
        return NormedLinear(in_features, num_classes)
    from nolb.errors import NolbError, did_you_mean

    raise NolbError(f"unknown head {kind!r}{did_you_mean(kind, HEAD_NAMES)}; expected one of {', '.join(HEAD_NAMES)}")
