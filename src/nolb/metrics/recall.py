"""Per-class recall and the means that expose the worst classes.

For C classes with per-class recall ``R_c = correct_c / n_c`` (top-1, ``n_c`` test images
of class ``c``):

* arithmetic mean  ``AM = (1/C) sum_c R_c``  (top-1 accuracy on a balanced test set);
* geometric mean   ``GM = exp((1/C) sum_c log R'_c)``;
* harmonic mean    ``HM = C / sum_c (1 / R'_c)``;
* lowest recall    ``min_c R_c``;

where ``R'_c = R_c`` if ``R_c > 0`` and ``R'_c = zero_recall`` otherwise (imbalanced-learn's
``correction``).  With ``zero_recall = 0`` the strict values are returned: GM = HM = 0 as
soon as one class has recall 0.  ``HM <= GM <= AM`` always holds.

The functions here work on numpy arrays and accept torch tensors (converted without
importing torch); every malformed input raises :class:`nolb.errors.NolbError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nolb.errors import NolbError
from nolb.metrics.constants import ZERO_RECALL


def to_numpy(values: Any, what: str) -> np.ndarray:
    """Convert a numpy array, torch tensor or sequence to a numpy array.

    Args:
        values: the input (a torch tensor is detached and moved to the CPU).
        what: its name, used in error messages.

    Returns:
        A numpy array (not copied when already one).
    """
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor
        values = values.detach().cpu()
        if str(values.dtype) in ("torch.bfloat16", "torch.float16"):
            values = values.float()
        values = values.numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise NolbError(f"{what}: not an array ({exc})") from None


def as_label_vector(values: Any, what: str, num_classes: int | None = None) -> np.ndarray:
    """Check and return a 1-D int64 vector of class indices in ``[0, num_classes)``.

    Args:
        values: labels as an array, tensor or sequence; floats must be whole numbers.
        what: its name, used in error messages.
        num_classes: the number of classes C, or None to skip the range check.

    Returns:
        The labels as an int64 numpy array of shape (N,).
    """
    array = to_numpy(values, what)
    if array.ndim != 1:
        raise NolbError(f"{what}: expected a 1-D vector of class indices, got shape {array.shape}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise NolbError(f"{what}: contains NaN or infinite values")
        if not np.all(array == np.round(array)):
            raise NolbError(f"{what}: class indices must be whole numbers")
    elif array.dtype.kind not in "iub":
        raise NolbError(f"{what}: expected integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if num_classes is not None and array.size:
        bad = (array < 0) | (array >= num_classes)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise NolbError(
                f"{what}: {int(bad.sum())} value(s) outside [0, {num_classes}), "
                f"first {int(array[first])} at position {first}"
            )
    return array


def predicted_labels(y_pred: Any, num_classes: int, what: str = "y_pred") -> np.ndarray:
    """Predicted labels from labels (N,) or scores/logits (N, C) (argmax, first on ties).

    Args:
        y_pred: predicted labels of shape (N,) or scores of shape (N, C).
        num_classes: the number of classes C.
        what: its name, used in error messages.

    Returns:
        int64 numpy array of shape (N,) with values in ``[0, C)``.
    """
    array = to_numpy(y_pred, what)
    if array.ndim == 2:
        if array.shape[1] != num_classes:
            raise NolbError(f"{what}: scores have {array.shape[1]} columns but num_classes is {num_classes}")
        if array.dtype.kind not in "fiub":
            raise NolbError(f"{what}: scores must be numbers, got dtype {array.dtype}")
        if array.dtype.kind == "f" and np.isnan(array).any():
            rows = np.flatnonzero(np.isnan(array).any(axis=1))
            raise NolbError(f"{what}: {rows.size} row(s) of scores contain NaN, first at row {int(rows[0])}")
        if array.dtype.kind == "f" and np.isposinf(array).any():
            # +inf is an overflow, not a score: the argmax among several +inf is arbitrary.
            rows = np.flatnonzero(np.isposinf(array).any(axis=1))
            raise NolbError(f"{what}: {rows.size} row(s) of scores contain +inf, first at row {int(rows[0])}")
        if array.dtype.kind == "f" and array.shape[0] and np.isneginf(array).all(axis=1).any():
            rows = np.flatnonzero(np.isneginf(array).all(axis=1))
            raise NolbError(f"{what}: {rows.size} row(s) of scores are all -inf, first at row {int(rows[0])}")
        return array.argmax(axis=1).astype(np.int64) if array.shape[0] else np.zeros(0, np.int64)
    return as_label_vector(array, what, num_classes)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """The (C, C) integer confusion matrix: entry (i, j) counts true class i predicted as j.

    Args:
        y_true: true labels (N,).
        y_pred: predicted labels (N,) or scores (N, C).
        num_classes: the number of classes C.

    Returns:
        int64 array of shape (C, C).
    """
    check_num_classes(num_classes)
    true = as_label_vector(y_true, "y_true", num_classes)
    pred = predicted_labels(y_pred, num_classes)
    if true.shape[0] != pred.shape[0]:
        raise NolbError(f"y_true has {true.shape[0]} samples but y_pred has {pred.shape[0]}")
    flat = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def check_num_classes(num_classes: Any) -> int:
    """Return ``num_classes`` as an int >= 1 or raise NolbError."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise NolbError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def corrected(recall: np.ndarray, zero_recall: float) -> np.ndarray:
    """Replace recalls equal to 0 by ``zero_recall`` (works on any shape)."""
    return np.where(recall > 0, recall, zero_recall)


def geometric_mean(recall: np.ndarray, zero_recall: float = ZERO_RECALL, axis: int = -1) -> np.ndarray | float:
    """``exp(mean(log R'))`` along ``axis``; 0 where a recall is 0 and ``zero_recall`` is 0."""
    values = corrected(np.asarray(recall, dtype=np.float64), zero_recall)
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(values), axis=axis))


def harmonic_mean(recall: np.ndarray, zero_recall: float = ZERO_RECALL, axis: int = -1) -> np.ndarray | float:
    """``C / sum(1 / R')`` along ``axis``; 0 where a recall is 0 and ``zero_recall`` is 0."""
    values = corrected(np.asarray(recall, dtype=np.float64), zero_recall)
    with np.errstate(divide="ignore"):
        return values.shape[axis] / np.sum(1.0 / values, axis=axis)
