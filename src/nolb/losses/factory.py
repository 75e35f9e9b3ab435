"""Build a loss from a short name and keyword options: ``build_loss("gml", counts, prior_strength=0)``.

Names (``LOSS_NAMES``):

=============  ==============================================================
``ce``         :class:`CrossEntropyLoss` (options: weight)
``bsce``       :class:`BalancedSoftmaxLoss`
``la``         :class:`LogitAdjustedLoss` (tau)
``ldam``       :class:`LDAMLoss` without re-weighting (max_margin, scale, beta, drw_epoch)
``ldam_drw``   :class:`LDAMLoss` with DRW from epoch 160 by default (same options)
``focal``      :class:`FocalLoss` (gamma, weight)
``cb``         class-balanced softmax CE: :class:`CrossEntropyLoss` weighted by
               :func:`class_balanced_weights` (beta)
``cb_focal``   class-balanced focal loss: :class:`FocalLoss` weighted likewise (beta, gamma)
``las``        :class:`LabelAwareSmoothing` (smooth_head, smooth_tail, shape, power)
``gml``        :class:`GeometricMeanLoss` (prior_strength, aggregate, power)
``paco``       :class:`PaCoLoss` (alpha, beta, gamma, temperature, ...; needs the
               two-view step of :mod:`nolb.engine.special_steps`)
``dive``       :class:`DiVELoss` (temperature, power, weight, teacher: a run dir, required)
=============  ==============================================================

An unknown name or option raises :class:`nolb.errors.NolbError` listing the valid ones;
an invalid value raises it from the loss's constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nolb.errors import NolbError, did_you_mean
from nolb.losses.balanced_softmax import BalancedSoftmaxLoss
from nolb.losses.class_balanced import class_balanced_weights
from nolb.losses.cross_entropy import CrossEntropyLoss
from nolb.losses.dive import DiVELoss
from nolb.losses.focal import FocalLoss
from nolb.losses.geometric_mean import GeometricMeanLoss
from nolb.losses.label_aware_smoothing import LabelAwareSmoothing
from nolb.losses.ldam import LDAMLoss
from nolb.losses.logit_adjusted import LogitAdjustedLoss
from nolb.losses.paco import PaCoLoss

__all__ = ["LOSS_NAMES", "STEP_LOSS_NAMES", "build_loss", "loss_options"]

DEFAULT_DRW_EPOCH = 160


def _ldam_drw(
    class_counts: Any,
    max_margin: float = 0.5,
    scale: float = 30.0,
    drw_epoch: int = DEFAULT_DRW_EPOCH,
    beta: float = 0.9999,
) -> LDAMLoss:
    return LDAMLoss(class_counts, max_margin=max_margin, scale=scale, drw_epoch=drw_epoch, beta=beta)


def _class_balanced_ce(class_counts: Any, beta: float = 0.9999) -> CrossEntropyLoss:
    return CrossEntropyLoss(class_counts, weight=class_balanced_weights(class_counts, beta, dtype=torch.float64))


def _class_balanced_focal(class_counts: Any, beta: float = 0.9999, gamma: float = 1.0) -> FocalLoss:
    return FocalLoss(class_counts, gamma=gamma, weight=class_balanced_weights(class_counts, beta, dtype=torch.float64))


def _dive(class_counts: Any, teacher: str | None = None, temperature: float = 3.0, power: float = 0.5,
          weight: float = 0.5) -> DiVELoss:
    if teacher is None or str(teacher).strip() == "":
        raise NolbError("loss 'dive' needs a teacher: set loss.options.teacher=RUN_DIR (a finished BSCE run)")
    return DiVELoss(class_counts, temperature=temperature, power=power, weight=weight, teacher=teacher)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "ce": CrossEntropyLoss,
    "bsce": BalancedSoftmaxLoss,
    "la": LogitAdjustedLoss,
    "ldam": LDAMLoss,
    "ldam_drw": _ldam_drw,
    "focal": FocalLoss,
    "cb": _class_balanced_ce,
    "cb_focal": _class_balanced_focal,
    "las": LabelAwareSmoothing,
    "gml": GeometricMeanLoss,
    "paco": PaCoLoss,
    "dive": _dive,
}

LOSS_NAMES: tuple[str, ...] = tuple(_BUILDERS)

# Losses called with more than (logits, target): PaCo (queries, keys, queue) and DiVE
# (teacher logits).  They train through nolb.engine.special_steps, not the plain loop.
STEP_LOSS_NAMES: tuple[str, ...] = ("paco", "dive")


def loss_options(name: str) -> tuple[str, ...]:
    """The option names that ``build_loss(name, ...)`` accepts, in signature order."""
    builder = _builder(name)
    parameters = list(inspect.signature(builder).parameters)
    return tuple(p for p in parameters if p != "class_counts")


def build_loss(name: str, class_counts: Any, **options: Any) -> nn.Module:
    """Build the loss called ``name`` for the given training class counts.

    Args:
        name: One of :data:`LOSS_NAMES`.
        class_counts: Training images per class, shape (C,) (tensor, array or sequence).
        **options: Keyword options of that loss (see :func:`loss_options`).

    Returns:
        The loss module, called as ``loss(logits, target) -> scalar``.

    Raises:
        NolbError: Unknown name, unknown option or invalid value.
    """
    builder = _builder(name)
    valid = loss_options(name)
    for key in options:
        if key not in valid:
            raise NolbError(f"loss {name!r}: unknown option {key!r}{did_you_mean(key, valid)}, "
                            f"expected one of ({', '.join(valid)})")
    return builder(class_counts, **options)


def _builder(name: str) -> Callable[..., nn.Module]:
    if not isinstance(name, str) or name not in _BUILDERS:
        raise NolbError(f"unknown loss {name!r}{did_you_mean(name, LOSS_NAMES)}, expected one of ({', '.join(LOSS_NAMES)})")
    return _BUILDERS[name]
