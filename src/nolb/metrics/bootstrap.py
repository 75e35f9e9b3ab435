"""Stratified bootstrap intervals for the worst-class metrics, computed exactly from counts.

A stratified bootstrap resamples, with replacement, the ``n_c`` test images of each class
``c`` separately (so every class keeps its test count).  Only whether each drawn image is
correct matters, and the images of class ``c`` are correct with frequency ``R_c``, so the
number correct in class ``c``'s resample is ``Binomial(n_c, R_c)``, independent across
classes.  Drawing a (B, C) matrix of binomials therefore *is* the stratified bootstrap,
without touching the N predictions: B = 1000 resamples of 1000 classes take well under a
second whatever N is.

Each metric is computed on every resample, and the 95% interval is the 2.5th and 97.5th
percentile of the B values (the percentile method, numpy's linear interpolation).
"""

from __future__ import annotations

import numpy as np

from nolb.errors import NolbError
from nolb.metrics.recall import geometric_mean, harmonic_mean
from nolb.metrics.constants import ZERO_RECALL
from nolb.progress import Progress

BOOTSTRAP_METRICS = ("accuracy", "am", "gm", "hm", "lowest")
CONFIDENCE = 0.95
_MAX_CELLS_PER_CHUNK = 4_000_000
_PROGRESS_MIN_CELLS = 50_000_000  # about a second of resampling: below it, no progress lines


def bootstrap_metric_samples(
    correct: np.ndarray,
    test_counts: np.ndarray,
    *,
    num_resamples: int,
    zero_recall: float = ZERO_RECALL,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Each metric on ``num_resamples`` stratified resamples of the test set.

    Args:
        correct: (C,) correctly classified test images per class.
        test_counts: (C,) test images per class, all > 0.
        num_resamples: the number of resamples B (>= 1).
        zero_recall: the value that replaces a recall of 0 in GM and HM.
        seed: seed of the numpy Generator that draws the resamples.

    Returns:
        ``{metric: (B,) float64 array}`` for the metrics in ``BOOTSTRAP_METRICS``.
    """
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, (int, np.integer)) or num_resamples < 1:
        raise NolbError(f"bootstrap: the number of resamples must be a positive integer, got {num_resamples!r}")
    counts = np.asarray(test_counts, dtype=np.int64)
    hits = np.asarray(correct, dtype=np.int64)
    if counts.ndim != 1 or counts.shape != hits.shape or (counts <= 0).any() or (hits < 0).any() or (hits > counts).any():
        raise NolbError("bootstrap: needs per-class counts with 0 <= correct <= test count and test count > 0")
    rng = np.random.default_rng(seed)
    recall = hits / counts
    num_classes = counts.shape[0]
    chunk = max(1, _MAX_CELLS_PER_CHUNK // num_classes)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in BOOTSTRAP_METRICS}
    small = num_resamples * num_classes < _PROGRESS_MIN_CELLS
    bar = Progress(num_resamples, desc="bootstrap", unit="resample", quiet=True if small else None)
    for start in range(0, num_resamples, chunk):
        rows = min(chunk, num_resamples - start)
        drawn = rng.binomial(counts, recall, size=(rows, num_classes))
        resampled = drawn / counts
        parts["accuracy"].append(drawn.sum(axis=1) / counts.sum())
        parts["am"].append(resampled.mean(axis=1))
        parts["gm"].append(geometric_mean(resampled, zero_recall, axis=1))
        parts["hm"].append(harmonic_mean(resampled, zero_recall, axis=1))
        parts["lowest"].append(resampled.min(axis=1))
        bar.update(rows)
    bar.close()
    return {name: np.concatenate(values) for name, values in parts.items()}


def bootstrap_intervals(
    correct: np.ndarray,
    test_counts: np.ndarray,
    *,
    num_resamples: int,
    zero_recall: float = ZERO_RECALL,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of accuracy, AM, GM, HM and lowest recall.

    Args:
        correct: (C,) correctly classified test images per class.
        test_counts: (C,) test images per class, all > 0.
        num_resamples: the number of resamples B.
        zero_recall: the value that replaces a recall of 0 in GM and HM.
        seed: seed of the resampling.

    Returns:
        ``{metric: (low, high)}`` as Python floats.
    """
    samples = bootstrap_metric_samples(
        correct, test_counts, num_resamples=num_resamples, zero_recall=zero_recall, seed=seed
    )
    tail = 100.0 * (1.0 - CONFIDENCE) / 2.0
    return {
        name: (float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail)))
        for name, values in samples.items()
    }
