"""Calibration of predicted probabilities: ECE, class-wise ECE, NLL and Brier score.

With ``p_i`` the predicted distribution of test image ``i`` (softmax of its logits, or the
probabilities given), ``y_i`` its class and ``M`` equal-width confidence bins
``B_m = ((m-1)/M, m/M]`` (a confidence of 0 joins the first bin):

* ``ece``: top-label expected calibration error (Guo et al. 2017),
  ``sum_m |B_m| / N * |acc(B_m) - conf(B_m)|`` over the images' top confidence
  ``max_k p_ik`` and whether the top class is right (ties: the first class, as argmax);
* ``classwise_ece``: the mean over classes ``k`` of the one-vs-rest ECE of ``p_ik`` against
  ``1[y_i = k]`` on all N images, each with the same M bins (Kull et al. 2019);
* ``nll``: ``mean_i -log p_{i, y_i}`` (natural log; from logits through log-softmax);
* ``brier``: ``mean_i sum_k (p_ik - 1[y_i = k])^2`` (the multi-class Brier score, in [0, 2]).

Per group (Many/Medium/Few by training count): ``ece``, ``nll`` and ``brier`` over the test
images whose true class is in the group, ``classwise_ece`` the mean over the group's classes.
Intervals: 95% stratified bootstrap (each class's test images resampled with replacement,
the percentile method), with real resamples of the images -- unlike recall, these metrics
are not functions of per-class counts.  Pure numpy; torch tensors are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nolb.errors import NolbError
from nolb.metrics.groups import GROUP_NAMES, group_masks
from nolb.metrics.recall import as_label_vector, to_numpy

CALIBRATION_METRICS = ("ece", "classwise_ece", "nll", "brier")
SCORE_KINDS = ("logits", "probs")
NUM_BINS = 15
# Class-wise ECE intervals cost N x C x B multiply-adds; above this they are left out.
MAX_CLASSWISE_BOOTSTRAP_WORK = 2e9
_MAX_CELLS_PER_CHUNK = 4_000_000
_PROB_TOLERANCE = 1e-3


def probabilities(scores: Any, kind: str = "logits") -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and log-probabilities (float64, (N, C)) from logits or probabilities.

    Args:
        scores: (N, C) logits (any real numbers; softmax is applied) or probabilities
            (non-negative rows summing to 1 within 1e-3; renormalised).
        kind: ``"logits"`` or ``"probs"``.

    Returns:
        ``(probs, log_probs)``; a probability of 0 has log-probability ``-inf``.
    """
    if kind not in SCORE_KINDS:
        raise NolbError(f"calibration: scores kind must be one of {SCORE_KINDS}, got {kind!r}")
    array = to_numpy(scores, "scores")
    if array.ndim != 2 or array.shape[1] < 1:
        raise NolbError(f"calibration: scores must have shape (N, C), got {array.shape}")
    if array.dtype.kind not in "fiu":
        raise NolbError(f"calibration: scores must be numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if kind == "logits":
        if np.isnan(array).any() or np.isposinf(array).any():
            raise NolbError("calibration: logits contain NaN or +inf")
        if array.shape[0] and np.isneginf(array).all(axis=1).any():
            raise NolbError(f"calibration: row {int(np.flatnonzero(np.isneginf(array).all(axis=1))[0])} of logits is all -inf")
        shifted = array - array.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return np.exp(log_probs), log_probs
    if not np.isfinite(array).all() or (array < 0).any():
        raise NolbError("calibration: probabilities must be finite and non-negative")
    sums = array.sum(axis=1, keepdims=True)
    if array.shape[0] and np.abs(sums - 1).max() > _PROB_TOLERANCE:
        row = int(np.argmax(np.abs(sums[:, 0] - 1)))
        raise NolbError(f"calibration: probability rows must sum to 1, row {row} sums to {float(sums[row, 0]):.6g}")
    probs = array / sums
    with np.errstate(divide="ignore"):
        return probs, np.log(probs)


def confidence_bins(confidence: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin index in ``[0, num_bins)`` of each confidence: bins ``((m-1)/M, m/M]``, 0 in the first."""
    return np.clip(np.ceil(np.asarray(confidence) * num_bins).astype(np.int64) - 1, 0, num_bins - 1)


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-label reliability diagram data: per bin its image count, accuracy and mean confidence.

    ``accuracy``/``confidence`` are NaN for an empty bin; ``edges`` has ``num_bins + 1`` values.
    """

    edges: np.ndarray
    counts: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    def to_dict(self) -> dict[str, list]:
        nan_free = lambda values: [None if np.isnan(v) else float(v) for v in values]  # noqa: E731
        return {"edges": [float(e) for e in self.edges], "counts": [int(c) for c in self.counts],
                "accuracy": nan_free(self.accuracy), "confidence": nan_free(self.confidence)}


def reliability_bins(probs: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> ReliabilityBins:
    """The reliability-diagram bins of the top-label confidence (see the module docstring)."""
    confidence, correct = _top_label(probs, labels)
    bins = confidence_bins(confidence, num_bins)
    counts = np.bincount(bins, minlength=num_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bins, correct, minlength=num_bins) / counts
        mean_conf = np.bincount(bins, confidence, minlength=num_bins) / counts
    return ReliabilityBins(np.linspace(0.0, 1.0, num_bins + 1), counts, accuracy, mean_conf)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> float:
    """Top-label ECE of (N, C) probabilities against (N,) labels."""
    confidence, correct = _top_label(probs, labels)
    bins = confidence_bins(confidence, num_bins)
    gaps = np.bincount(bins, correct - confidence, minlength=num_bins)
    return float(np.abs(gaps).sum() / max(1, confidence.shape[0]))


def classwise_calibration_errors(probs: np.ndarray, labels: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """(C,) one-vs-rest ECE of each class over all N images (their mean is ``classwise_ece``)."""
    sums = _classwise_bin_sums(probs, labels, num_bins)
    return np.abs(sums).sum(axis=1) / max(1, probs.shape[0])


def negative_log_likelihood(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean of ``-log p_{i, y_i}`` (``inf`` when a true class has probability 0)."""
    return float(-log_probs[np.arange(labels.shape[0]), labels].mean())


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of ``sum_k (p_ik - 1[y_i = k])^2``."""
    return float(_per_image_brier(probs, labels).mean())


@dataclass(frozen=True)
class CalibrationReport:
    """Calibration metrics of one set of predicted probabilities (see the module docstring).

    Attributes:
        ece, classwise_ece, nll, brier: the metrics over all test images.
        per_class_ece: (C,) one-vs-rest ECE of each class.
        groups: ``{"many"|"medium"|"few": {metric: value or None}}`` ({} without train counts).
        intervals: ``{metric: (low, high)}`` 95% bootstrap intervals ({} without bootstrap;
            ``classwise_ece`` is left out when too costly, see ``notes``).
        bins: the top-label reliability bins.
        source: ``"logits"`` (softmax applied) or ``"probs"``.
        num_bins: the number of confidence bins M.
        notes: remarks on what was left out.
    """

    ece: float
    classwise_ece: float
    nll: float
    brier: float
    per_class_ece: np.ndarray
    bins: ReliabilityBins
    source: str
    num_bins: int = NUM_BINS
    groups: dict[str, dict[str, float | None]] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (an infinite NLL becomes None)."""
        finite = lambda v: None if v is None or not np.isfinite(v) else float(v)  # noqa: E731
        return {
            **{name: finite(getattr(self, name)) for name in CALIBRATION_METRICS},
            "source": self.source,
            "num_bins": self.num_bins,
            "groups": {g: {k: finite(v) for k, v in values.items()} for g, values in self.groups.items()},
            "intervals": {name: [low, high] for name, (low, high) in self.intervals.items()},
            "per_class_ece": [float(v) for v in self.per_class_ece],
            "reliability": self.bins.to_dict(),
            "notes": list(self.notes),
        }


def calibration_report(
    y_true: Any,
    scores: Any,
    *,
    kind: str = "logits",
    train_counts: Any = None,
    many_threshold: float = 100,
    few_threshold: float = 20,
    bootstrap: int = 0,
    seed: int = 0,
    num_bins: int = NUM_BINS,
) -> CalibrationReport:
    """ECE, class-wise ECE, NLL and Brier score, per group and with bootstrap intervals.

    Args:
        y_true: (N,) true labels.
        scores: (N, C) logits (``kind="logits"``) or probabilities (``kind="probs"``).
        kind: what ``scores`` hold.
        train_counts: (C,) training images per class; enables the per-group values.
        many_threshold, few_threshold: the Many/Medium/Few rule (see :mod:`nolb.metrics.groups`).
        bootstrap: stratified bootstrap resamples for the 95% intervals (0: none).
        seed: seed of the resampling.
        num_bins: the number of equal-width confidence bins (15 by default).

    Returns:
        The :class:`CalibrationReport`.
    """
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or num_bins < 1:
        raise NolbError(f"calibration: num_bins must be a positive integer, got {num_bins!r}")
    probs, log_probs = probabilities(scores, kind)
    num_classes = probs.shape[1]
    labels = as_label_vector(y_true, "y_true", num_classes)
    if labels.shape[0] != probs.shape[0]:
        raise NolbError(f"calibration: {labels.shape[0]} labels but {probs.shape[0]} rows of scores")
    if labels.shape[0] == 0:
        raise NolbError("calibration: no test sample")
    per_class = classwise_calibration_errors(probs, labels, num_bins)
    groups: dict[str, dict[str, float | None]] = {}
    if train_counts is not None:
        counts = to_numpy(train_counts, "train_counts")
        for name, mask in group_masks(counts, many_threshold, few_threshold).items():
            rows = mask[labels]
            groups[name] = {
                "ece": expected_calibration_error(probs[rows], labels[rows], num_bins) if rows.any() else None,
                "classwise_ece": float(per_class[mask].mean()) if mask.any() else None,
                "nll": negative_log_likelihood(log_probs[rows], labels[rows]) if rows.any() else None,
                "brier": brier_score(probs[rows], labels[rows]) if rows.any() else None,
            }
        groups = {name: groups[name] for name in GROUP_NAMES}
    intervals, notes = {}, []
    if bootstrap:
        intervals, notes = _bootstrap(probs, log_probs, labels, num_bins, bootstrap, seed)
    return CalibrationReport(
        ece=expected_calibration_error(probs, labels, num_bins),
        classwise_ece=float(per_class.mean()),
        nll=negative_log_likelihood(log_probs, labels),
        brier=brier_score(probs, labels),
        per_class_ece=per_class,
        bins=reliability_bins(probs, labels, num_bins),
        source=kind,
        num_bins=int(num_bins),
        groups=groups,
        intervals=intervals,
        notes=tuple(notes),
    )


def _top_label(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top = probs.argmax(axis=1)
    return probs[np.arange(top.shape[0]), top], (top == labels).astype(np.float64)


def _per_image_brier(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rows = np.arange(labels.shape[0])
    true_prob = probs[rows, labels]
    return (probs**2).sum(axis=1) - 2 * true_prob + 1


def _classwise_bin_sums(probs: np.ndarray, labels: np.ndarray, num_bins: int, weights: np.ndarray | None = None) -> np.ndarray:
    """(C, M) sums over images in each class's bins of ``1[y = k] - p_k`` (optionally weighted)."""
    num, num_classes = probs.shape
    sums = np.zeros(num_classes * num_bins)
    chunk = max(1, _MAX_CELLS_PER_CHUNK // num_classes)
    offsets = np.arange(num_classes) * num_bins
    for start in range(0, num, chunk):
        part = probs[start:start + chunk]
        hit = np.zeros_like(part)
        hit[np.arange(part.shape[0]), labels[start:start + chunk]] = 1.0
        gap = hit - part
        if weights is not None:
            gap = gap * weights[start:start + chunk, None]
        index = confidence_bins(part, num_bins) + offsets
        sums += np.bincount(index.ravel(), gap.ravel(), minlength=num_classes * num_bins)
    return sums.reshape(num_classes, num_bins)


def _bootstrap(probs, log_probs, labels, num_bins, num_resamples, seed) -> tuple[dict, list[str]]:
    """Percentile intervals from ``num_resamples`` stratified resamples of the images."""
    if isinstance(num_resamples, bool) or not isinstance(num_resamples, (int, np.integer)) or num_resamples < 1:
        raise NolbError(f"bootstrap: the number of resamples must be a positive integer, got {num_resamples!r}")
    num, num_classes = probs.shape
    rng = np.random.default_rng([seed, 0xCA1])
    members = [np.flatnonzero(labels == c) for c in range(num_classes)]
    confidence, correct = _top_label(probs, labels)
    top_bins = confidence_bins(confidence, num_bins)
    per_image = np.stack([correct - confidence, -log_probs[np.arange(num), labels], _per_image_brier(probs, labels)], axis=1)
    # (N, M + 2): the top-label gap in its bin, then NLL and Brier of each image.
    design = np.zeros((num, num_bins + 2))
    design[np.arange(num), top_bins] = per_image[:, 0]
    design[:, num_bins:] = per_image[:, 1:]
    classwise = num * num_classes * num_resamples <= MAX_CLASSWISE_BOOTSTRAP_WORK
    sparse = _classwise_design(probs, labels, num_bins) if classwise else None
    samples: dict[str, list[np.ndarray]] = {name: [] for name in CALIBRATION_METRICS}
    chunk = max(1, _MAX_CELLS_PER_CHUNK // max(num, 1))
    for start in range(0, num_resamples, chunk):
        rows = min(chunk, num_resamples - start)
        weights = np.zeros((rows, num))
        for index in members:
            if index.size:
                weights[:, index] = rng.multinomial(index.size, np.full(index.size, 1.0 / index.size), size=rows)
        sums = weights @ design / num
        samples["ece"].append(np.abs(sums[:, :num_bins]).sum(axis=1))
        samples["nll"].append(sums[:, num_bins])
        samples["brier"].append(sums[:, num_bins + 1])
        if classwise:
            per_bin = np.asarray((sparse.T @ weights.T).T).reshape(rows, num_classes, num_bins)
            samples["classwise_ece"].append(np.abs(per_bin).sum(axis=2).mean(axis=1) / num)
    notes = [] if classwise else [
        f"classwise_ece: no interval (N x C x B = {num * num_classes * num_resamples:.2g} above "
        f"{MAX_CLASSWISE_BOOTSTRAP_WORK:.0e})"]
    intervals = {}
    for name, parts in samples.items():
        if parts:
            values = np.concatenate(parts)
            with np.errstate(invalid="ignore"):
                low, high = np.percentile(values, [2.5, 97.5])
            intervals[name] = (float(low), float(high))
    return intervals, notes


def _classwise_design(probs: np.ndarray, labels: np.ndarray, num_bins: int):
    """Sparse (N, C*M): image i's ``1[y_i = k] - p_ik`` in column ``k*M + bin(p_ik)``."""
    from scipy import sparse

    num, num_classes = probs.shape
    hit = np.zeros_like(probs)
    hit[np.arange(num), labels] = 1.0
    columns = confidence_bins(probs, num_bins) + np.arange(num_classes) * num_bins
    rows = np.repeat(np.arange(num), num_classes)
    return sparse.csr_matrix(((hit - probs).ravel(), (rows, columns.ravel())), shape=(num, num_classes * num_bins))
