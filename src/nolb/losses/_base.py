"""The small base class every loss of :mod:`nolb.losses` derives from.

A loss is an ``nn.Module`` called as ``loss(logits, target) -> scalar``. The training
class counts n_c live in the int64 buffer ``class_counts`` (it follows ``.to(device)``
and, being an integer buffer, is never cast by ``.half()``); quantities derived from it
(log n, margins) are computed in the logits' working precision on each call, which costs
O(C). Per-class weights are float64 buffers, cast to the working precision when used.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.losses._checks import as_class_counts, check_batch

__all__ = ["ClassCountLoss", "as_class_weights", "weighted_mean"]


class ClassCountLoss(nn.Module):
    """Base of the long-tailed losses: holds and checks the class counts.

    Args:
        class_counts: Training images per class, shape (C,), whole numbers >= 0.
        positive_counts: Require every count >= 1 (for losses that take log n_c).
    """

    class_counts: torch.Tensor

    def __init__(self, class_counts: Any, *, positive_counts: bool = False) -> None:
        super().__init__()
        counts = as_class_counts(class_counts, owner=self._name, positive=positive_counts)
        self.register_buffer("class_counts", counts)

    @property
    def _name(self) -> str:
        return type(self).__name__

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return int(self.class_counts.shape[0])

    def _check(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Check the batch; return the logits promoted to at least float32."""
        return check_batch(self._name, logits, target, self.num_classes)

    def _counts_as(self, like: torch.Tensor) -> torch.Tensor:
        """The class counts as a floating tensor with ``like``'s dtype and device."""
        return self.class_counts.to(device=like.device, dtype=like.dtype)

    def _log_counts_as(self, like: torch.Tensor) -> torch.Tensor:
        """log n_c with ``like``'s dtype and device, shape (C,)."""
        return self._counts_as(like).log()


def as_class_weights(weight: Any, *, owner: str, num_classes: int) -> torch.Tensor | None:
    """Check optional per-class weights: None, or C finite numbers > 0 (kept as float64)."""
    if weight is None:
        return None
    try:
        values = torch.as_tensor(weight).detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise NolbError(f"{owner}: weight must be numeric, got {type(weight).__name__} ({error})") from None
    if values.shape != (num_classes,):
        raise NolbError(f"{owner}: weight must have shape ({num_classes},), got {tuple(values.shape)}")
    if not torch.isfinite(values).all() or (values <= 0).any():
        raise NolbError(f"{owner}: weight must hold finite numbers > 0")
    return values


def weighted_mean(per_sample: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """sum_i w_{y_i} l_i / sum_i w_{y_i} (the plain mean when ``weight`` is None).

    This is the normalisation of ``torch.nn.functional.cross_entropy`` with ``weight``.
    """
    if weight is None:
        return per_sample.mean()
    sample_weight = weight.to(per_sample.dtype)[target]
    return (sample_weight * per_sample).sum() / sample_weight.sum()
