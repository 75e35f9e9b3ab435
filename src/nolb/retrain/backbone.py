"""Split any classifier into its frozen feature extractor and its head.

A nolb model has ``forward(x) = classifier(forward_features(x))``; a torchvision model has
its head under another attribute (``fc`` for ResNets).  :func:`split_classifier` works on
both without modifying the model: the backbone is a shallow copy whose head attribute is
replaced by ``nn.Identity`` and which shares every parameter and buffer with the model.
"""

from __future__ import annotations

import copy

from torch import nn

from nolb.errors import NolbError


def split_classifier(model: nn.Module, classifier: str = "classifier") -> tuple[nn.Module, nn.Module]:
    """Return ``(backbone, head)`` with ``model(x) == head(backbone(x))``.

    Args:
        model: a trained classifier.
        classifier: the attribute holding the final layer (``"classifier"`` for nolb
            models, ``"fc"`` for torchvision ResNets, ``"head"`` for many others); a
            dotted path such as ``"heads.head"`` is accepted.

    Returns:
        The backbone (a module mapping images to (N, D) features, sharing the model's
        parameters) and the original head (the model's own module, not a copy).

    Raises:
        NolbError: the attribute does not exist or is not a module.
    """
    *parents, leaf = classifier.split(".")
    backbone = _shallow_copy(model)
    holder, original_holder = backbone, model
    for name in parents:
        child = getattr(original_holder, name, None)
        if not isinstance(child, nn.Module):
            raise NolbError(f"--classifier {classifier!r}: the model has no sub-module {name!r}")
        copied = _shallow_copy(child)
        holder._modules[name] = copied
        holder, original_holder = copied, child
    head = getattr(original_holder, leaf, None)
    if not isinstance(head, nn.Module):
        names = ", ".join(n for n, _ in model.named_children())
        raise NolbError(f"--classifier {classifier!r}: not a module of {type(model).__name__} (children: {names})")
    holder._modules[leaf] = nn.Identity()
    return backbone, head


def _shallow_copy(module: nn.Module) -> nn.Module:
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    return clone


def feature_dim_of(head: nn.Module) -> int:
    """The input dimension D of a linear or normed-linear head."""
    weight = getattr(head, "weight", None)
    if weight is None or weight.dim() != 2:
        raise NolbError(f"the classifier {type(head).__name__} has no (C, D) weight; cannot re-train it")
    return int(weight.shape[1])
