"""Long-tailed classification losses, each taking the training class counts as a tensor.

Stage 1 (base models): :class:`CrossEntropyLoss`, :class:`BalancedSoftmaxLoss`,
:class:`LogitAdjustedLoss`, :class:`LDAMLoss` (with DRW), :class:`FocalLoss`, the
class-balanced weights :func:`class_balanced_weights`, and two methods with their own
training step (:mod:`nolb.engine.special_steps`): PaCo's :class:`PaCoLoss` (two views, a
momentum encoder and a queue) and DiVE's :class:`DiVELoss` (distillation from a teacher). Stage 2 (classifier re-training):
:class:`GeometricMeanLoss` (the paper's GML) and MiSLAS' :class:`LabelAwareSmoothing`.
Build any of them by name with :func:`build_loss`.

Every loss is called as ``loss(logits, target) -> scalar``, keeps the counts in the int64
buffer ``class_counts`` (it follows ``.to(device)``), computes in float32 (float64 if given
float64) whatever the logits' dtype, and raises :class:`nolb.errors.NolbError` on bad input.
"""

from nolb.losses.balanced_softmax import BalancedSoftmaxLoss
from nolb.losses.class_balanced import class_balanced_weights
from nolb.losses.cross_entropy import CrossEntropyLoss
from nolb.losses.dive import DiVELoss
from nolb.losses.factory import LOSS_NAMES, STEP_LOSS_NAMES, build_loss, loss_options
from nolb.losses.focal import FocalLoss
from nolb.losses.geometric_mean import GML_AGGREGATES, GeometricMeanLoss
from nolb.losses.label_aware_smoothing import SMOOTHING_SHAPES, LabelAwareSmoothing
from nolb.losses.ldam import LDAMLoss
from nolb.losses.logit_adjusted import LogitAdjustedLoss
from nolb.losses.paco import PaCoLoss

__all__ = [
    "LOSS_NAMES",
    "STEP_LOSS_NAMES",
    "GML_AGGREGATES",
    "SMOOTHING_SHAPES",
    "BalancedSoftmaxLoss",
    "CrossEntropyLoss",
    "DiVELoss",
    "FocalLoss",
    "GeometricMeanLoss",
    "LDAMLoss",
    "LabelAwareSmoothing",
    "LogitAdjustedLoss",
    "PaCoLoss",
    "build_loss",
    "class_balanced_weights",
    "loss_options",
]
