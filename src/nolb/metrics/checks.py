"""Validation of the inputs of a RecallReport; each failure is a one-line NolbError."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from nolb.errors import NolbError
from nolb.limits import MAX_TRAIN_COUNT
from nolb.metrics.recall import to_numpy


def check_confusion(confusion: Any) -> np.ndarray:
    """Return a (C, C) confusion matrix as int64 counts."""
    matrix = to_numpy(confusion, "confusion")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        raise NolbError(f"confusion: expected a square (C, C) matrix, got shape {matrix.shape}")
    if matrix.dtype.kind == "f" and not (np.isfinite(matrix).all() and (matrix == np.round(matrix)).all()):
        raise NolbError("confusion: counts must be whole finite numbers")
    if matrix.dtype.kind not in "iuf":
        raise NolbError(f"confusion: expected integer counts, got dtype {matrix.dtype}")
    if (matrix < 0).any():
        raise NolbError("confusion: counts must be non-negative")
    return matrix.astype(np.int64)


def check_zero_recall(zero_recall: float) -> None:
    """Raise unless ``zero_recall`` is a number in [0, 1]."""
    if isinstance(zero_recall, bool) or not isinstance(zero_recall, (int, float, np.number)) or not 0 <= zero_recall <= 1:
        raise NolbError(f"zero_recall must be a number in [0, 1], got {zero_recall!r}")


def check_train_counts(train_counts: Any, num_classes: int) -> np.ndarray | None:
    """Return C non-negative whole training counts as int64 (None stays None)."""
    if train_counts is None:
        return None
    counts = to_numpy(train_counts, "train_counts")
    if counts.ndim != 1 or counts.shape[0] != num_classes:
        raise NolbError(f"train_counts: expected {num_classes} values (one per class), got shape {counts.shape}")
    if counts.dtype.kind not in "iuf" or not np.isfinite(counts).all() or (counts < 0).any() or (counts != np.round(counts)).any():
        raise NolbError("train_counts: expected non-negative whole numbers")
    if (counts > MAX_TRAIN_COUNT).any():  # 1e30 would wrap to a negative int64 and land in "Few"
        raise NolbError(f"train_counts: {counts.max():g} is not a training count (limit {MAX_TRAIN_COUNT})")
    return counts.astype(np.int64)


def check_class_names(class_names: Sequence[str] | None, num_classes: int) -> tuple[str, ...] | None:
    """Return C class names as a tuple of str (None stays None)."""
    if class_names is None:
        return None
    names = tuple(str(name) for name in to_numpy(class_names, "class_names").reshape(-1).tolist())
    if len(names) != num_classes:
        raise NolbError(f"class_names: expected {num_classes} names, got {len(names)}")
    return names
