"""`RecallMeter`: a streaming confusion matrix for large and distributed evaluation.

Feed it batch after batch (predicted labels or scores, on any device); it keeps only a
(C, C) int64 confusion matrix, so memory does not grow with the test set.  Under
``torch.distributed`` each rank counts its own shard and :meth:`RecallMeter.all_reduce`
sums the matrices; the result is exactly the single-process one as long as every test
image is seen by exactly one rank (no padded or repeated samples).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nolb.errors import NolbError
from nolb.metrics.recall import check_num_classes
from nolb.metrics.report import RecallReport


class RecallMeter:
    """Accumulate a confusion matrix and turn it into a :class:`RecallReport`.

    Args:
        num_classes: the number of classes C.

    Example:
        >>> meter = RecallMeter(3)
        >>> meter.update(torch.tensor([[2.0, 0.1, 0.3], [0.0, 1.0, 0.2]]), torch.tensor([0, 2]))
        >>> meter.confusion[0].tolist(), meter.confusion[2].tolist()
        ([1, 0, 0], [0, 1, 0])
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = check_num_classes(num_classes)
        self._local: torch.Tensor | None = None
        self._reduced: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget every update."""
        self._local = None
        self._reduced = None

    @torch.no_grad()
    def update(self, scores_or_pred: Any, target: Any) -> None:
        """Count one batch.

        Args:
            scores_or_pred: (N, C) scores/logits (argmax taken) or (N,) predicted labels.
            target: (N,) true labels in ``[0, C)``.

        Raises:
            NolbError: shapes that do not match, NaN scores, labels outside ``[0, C)``.
        """
        pred = torch.as_tensor(scores_or_pred)
        target = torch.as_tensor(target, device=pred.device)
        C = self.num_classes
        if target.ndim != 1:
            raise NolbError(f"RecallMeter.update: target must be 1-D, got shape {tuple(target.shape)}")
        if pred.ndim == 2:
            if pred.shape[1] != C:
                raise NolbError(f"RecallMeter.update: scores have {pred.shape[1]} columns, expected {C}")
            if pred.is_floating_point() and torch.isnan(pred).any():
                raise NolbError("RecallMeter.update: scores contain NaN")
            pred = pred.argmax(dim=1) if pred.shape[0] else pred.new_zeros(0, dtype=torch.long)
        elif pred.ndim != 1:
            raise NolbError(f"RecallMeter.update: expected (N, C) scores or (N,) labels, got shape {tuple(pred.shape)}")
        if pred.shape[0] != target.shape[0]:
            raise NolbError(f"RecallMeter.update: {pred.shape[0]} predictions but {target.shape[0]} targets")
        if pred.is_floating_point() or target.is_floating_point():
            raise NolbError("RecallMeter.update: labels must be integers")
        pred, target = pred.long(), target.long()
        for name, labels in (("target", target), ("predicted label", pred)):
            if labels.numel() and (labels.min() < 0 or labels.max() >= C):
                raise NolbError(f"RecallMeter.update: {name} outside [0, {C})")
        counts = torch.bincount(target * C + pred, minlength=C * C).view(C, C)
        if self._local is None:
            self._local = torch.zeros(C, C, dtype=torch.int64, device=counts.device)
        self._local += counts.to(self._local.device)
        self._reduced = None

    def all_reduce(self, group: Any = None) -> "RecallMeter":
        """Sum the confusion matrices of all ranks (a no-op without an initialised process group).

        Every rank must call it.  It may be called again after more updates: the sum is
        always recomputed from each rank's own counts, never counted twice.

        Args:
            group: the process group (default: the whole world).

        Returns:
            ``self``.
        """
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self
        local = self._local_counts()
        if torch.distributed.get_backend(group) == "nccl" and local.device.type != "cuda":
            local = local.to(torch.device("cuda", torch.cuda.current_device()))
        reduced = local.clone()
        torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.SUM, group=group)
        self._reduced = reduced
        return self

    @property
    def confusion(self) -> np.ndarray:
        """The (C, C) int64 confusion matrix (all ranks' after :meth:`all_reduce`)."""
        counts = self._reduced if self._reduced is not None else self._local_counts()
        return counts.cpu().numpy().copy()

    @property
    def num_samples(self) -> int:
        return int(self.confusion.sum())

    def report(self, train_counts: Any = None, **options: Any) -> RecallReport:
        """The RecallReport of everything counted (options as in ``RecallReport.from_confusion``)."""
        return RecallReport.from_confusion(self.confusion, train_counts=train_counts, **options)

    def _local_counts(self) -> torch.Tensor:
        if self._local is None:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        return self._local
