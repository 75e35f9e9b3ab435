"""Any timm architecture as a nolb model: ``model.name=timm/<name>`` (e.g. ``timm/resnet10t``).

The timm network is built with ``pretrained=False`` (nothing is ever downloaded) and its
own classifier is removed with timm's ``reset_classifier(0)``; nolb's replaceable
``classifier`` (linear or cosine) sits on timm's pre-logits features
(``forward_head(..., pre_logits=True)``), so ``forward_features`` gives ``(N, D)`` and stage 2
re-trains ``classifier`` like for any nolb model.  Weights saved by timm itself (a
``state_dict`` with timm's names) load through :func:`nolb.models.checkpoint.load_foreign_checkpoint`
(``weights_only=True``): ``foreign_key_renames`` maps timm's classifier (its
``pretrained_cfg["classifier"]``, e.g. ``fc`` or ``head.fc``) to ``classifier`` and every
other top-level module to ``net.<module>``.  ``**options`` go to ``timm.create_model``
(e.g. ``drop_rate``, or a width option of the architecture).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.models.heads import build_head

PREFIX = "timm/"


def is_timm_name(name: str) -> bool:
    """True for ``timm/<architecture>`` names."""
    return isinstance(name, str) and name.startswith(PREFIX) and len(name) > len(PREFIX)


class TimmModel(nn.Module):
    """A timm network split into ``forward_features`` and a replaceable ``classifier``.

    Args:
        arch: a timm architecture name (``timm.list_models()``), without the ``timm/`` prefix.
        num_classes: Number of classes C.
        in_channels: Image channels (timm adapts the stem).
        head: ``"linear"`` or ``"cosine"``.
        **options: passed to ``timm.create_model``.
    """

    def __init__(self, arch: str, num_classes: int, *, in_channels: int = 3, head: str = "linear",
                 **options: Any) -> None:
        super().__init__()
        try:
            import timm
        except ImportError:
            raise NolbError("model.name=timm/...: timm is not installed; pip install 'nolb[timm]'") from None
        if not timm.is_model(arch):
            raise NolbError(f"model.name: {PREFIX}{arch}: not a timm architecture (see timm.list_models())")
        net = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_channels, **options)
        timm_classifier = net.pretrained_cfg.get("classifier") or "fc"
        net.reset_classifier(0)
        self.arch = arch
        self.net = net
        self.feature_dim = int(getattr(net, "head_hidden_size", None) or net.num_features)
        self.classifier = build_head(head, self.feature_dim, num_classes)
        renames = {f"{timm_classifier}.": "classifier."}
        renames.update({f"{child}.": f"net.{child}." for child, _ in net.named_children() if child != timm_classifier})
        self.foreign_key_renames = renames

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """timm's pre-logits features (pooled, after any head norm), shape (N, D)."""
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def build_timm_model(name: str, num_classes: int, *, in_channels: int = 3, head: str = "linear",
                     **options: Any) -> TimmModel:
    """Build ``timm/<arch>`` (see :class:`TimmModel`)."""
    if not is_timm_name(name):
        raise NolbError(f"model.name: {name!r} is not of the form timm/<architecture>")
    return TimmModel(name[len(PREFIX):], num_classes, in_channels=in_channels, head=head, **options)
