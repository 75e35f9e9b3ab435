"""`RecallReport`: per-class recall and the worst-class summary of one set of predictions.

Build one with :func:`recall_report` (labels and predictions or scores) or
:meth:`RecallReport.from_confusion` (a confusion matrix, e.g. from
:class:`~nolb.metrics.meter.RecallMeter`).  The definitions of every number are in
:mod:`nolb.metrics.recall`, :mod:`nolb.metrics.groups` and :mod:`nolb.metrics.bootstrap`
(and in docs/METRICS.md).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nolb.errors import NolbError
from nolb.io import write_json, write_text
from nolb.metrics.bootstrap import bootstrap_intervals
from nolb.metrics.calibration import CALIBRATION_METRICS, SCORE_KINDS, CalibrationReport, calibration_report
from nolb.metrics.groups import GROUP_NAMES, check_thresholds, group_masks, group_rule
from nolb.metrics.checks import check_class_names, check_confusion, check_train_counts, check_zero_recall
from nolb.metrics.recall import check_num_classes, confusion_matrix, geometric_mean, harmonic_mean, to_numpy
from nolb.metrics.constants import ZERO_RECALL, MANY_THRESHOLD, FEW_THRESHOLD

CSV_COLUMNS = ("class", "name", "group", "train_count", "test_count", "correct", "recall")


@dataclass(frozen=True, repr=False)
class RecallReport:
    """Worst-class metrics of one set of predictions; every score is a fraction in [0, 1].

    Attributes:
        per_class: (C,) recall of each class (NaN for a class left out by ``exclude_empty``).
        correct: (C,) correctly classified test images per class.
        test_counts: (C,) test images per class.
        am, gm, hm: arithmetic, geometric and harmonic mean of the evaluated classes'
            recalls (GM and HM with recalls of 0 replaced by ``zero_recall``).
        lowest: the lowest recall; ``lowest_class`` its class (the first one on ties).
        num_zero: the number of classes with recall exactly 0.
        accuracy: plain top-1 accuracy over all test images (equals ``am`` only on a
            balanced test set).
        train_counts: (C,) training images per class, or None.
        many, medium, few: mean recall of each group, None when the group has no class or
            no ``train_counts`` were given.
        group_sizes: ``{"many": k, "medium": k, "few": k}`` classes per group ({} without
            ``train_counts``).
        intervals: ``{metric: (low, high)}`` 95% stratified-bootstrap intervals of
            accuracy, am, gm, hm and lowest ({} unless ``bootstrap > 0``).
        excluded_classes: classes left out because they have no test sample.
        calibration: ECE, class-wise ECE, NLL and Brier score
            (:class:`~nolb.metrics.calibration.CalibrationReport`), or None when only
            labels were given or calibration was not asked for.
    """

    per_class: np.ndarray
    correct: np.ndarray
    test_counts: np.ndarray
    am: float
    gm: float
    hm: float
    lowest: float
    lowest_class: int
    num_zero: int
    accuracy: float
    train_counts: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    many: float | None = None
    medium: float | None = None
    few: float | None = None
    group_sizes: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    excluded_classes: tuple[int, ...] = ()
    zero_recall: float = ZERO_RECALL
    many_threshold: float = MANY_THRESHOLD
    few_threshold: float = FEW_THRESHOLD
    bootstrap: int = 0
    seed: int = 0
    calibration: CalibrationReport | None = None

    @property
    def num_classes(self) -> int:
        return int(self.per_class.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.test_counts.sum())

    @property
    def zero_recall_classes(self) -> list[int]:
        """Indices of the classes with recall exactly 0."""
        return [int(c) for c in np.flatnonzero(self.per_class == 0)]

    @property
    def group_rule(self) -> str | None:
        """The Many/Medium/Few rule used, or None without training counts."""
        return None if self.train_counts is None else group_rule(self.many_threshold, self.few_threshold)

    @classmethod
    def from_confusion(
        cls,
        confusion: Any,
        *,
        train_counts: Any = None,
        class_names: Sequence[str] | None = None,
        zero_recall: float = ZERO_RECALL,
        many_threshold: float = MANY_THRESHOLD,
        few_threshold: float = FEW_THRESHOLD,
        bootstrap: int = 0,
        seed: int = 0,
        exclude_empty: bool = False,
    ) -> "RecallReport":
        """Build the report from a (C, C) confusion matrix (rows: true class, columns: prediction).

        Args:
            confusion: (C, C) non-negative integer counts (numpy array or torch tensor).
            train_counts: (C,) training images per class; enables Many/Medium/Few.
            class_names: C class names, used in tables and CSV files.
            zero_recall: replaces a recall of 0 in GM and HM (0 gives the strict values).
            many_threshold: Many = more than this many training images.
            few_threshold: Few = fewer than this many training images.
            bootstrap: number of stratified bootstrap resamples for the intervals (0: none).
            seed: seed of the bootstrap.
            exclude_empty: leave out classes with no test sample (their recall is NaN and
                they enter no mean or group) instead of raising.

        Returns:
            The RecallReport.

        Raises:
            NolbError: malformed inputs, or a class with no test sample unless
                ``exclude_empty`` is set.
        """
        matrix = check_confusion(confusion)
        num_classes = matrix.shape[0]
        check_zero_recall(zero_recall)
        check_thresholds(many_threshold, few_threshold)
        counts = check_train_counts(train_counts, num_classes)
        names = check_class_names(class_names, num_classes)

        test_counts = matrix.sum(axis=1)
        correct = np.diagonal(matrix).copy()
        evaluated = test_counts > 0
        empty = np.flatnonzero(~evaluated)
        if empty.size and (not exclude_empty or empty.size == num_classes):
            listed = ", ".join(str(c) for c in empty[:20]) + (" ..." if empty.size > 20 else "")
            problem = f"{empty.size} class(es) have no test sample: {listed}"
            if exclude_empty:
                raise NolbError(problem)
            raise NolbError(f"{problem} (pass exclude_empty=True to leave them out)",
                            cli=f"{problem} (pass --exclude-empty to leave them out)")

        per_class = np.full(num_classes, np.nan)
        per_class[evaluated] = correct[evaluated] / test_counts[evaluated]
        recall = per_class[evaluated]
        lowest_class = int(np.flatnonzero(evaluated)[np.argmin(recall)])

        groups: dict[str, float | None] = {name: None for name in GROUP_NAMES}
        sizes: dict[str, int] = {}
        if counts is not None:
            for name, mask in group_masks(counts, many_threshold, few_threshold).items():
                members = mask & evaluated
                sizes[name] = int(members.sum())
                groups[name] = float(per_class[members].mean()) if sizes[name] else None

        intervals = {}
        if bootstrap:
            intervals = bootstrap_intervals(
                correct[evaluated], test_counts[evaluated], num_resamples=bootstrap, zero_recall=zero_recall, seed=seed
            )
        return cls(
            per_class=_frozen(per_class),
            correct=_frozen(correct),
            test_counts=_frozen(test_counts),
            am=float(recall.mean()),
            gm=float(geometric_mean(recall, zero_recall)),
            hm=float(harmonic_mean(recall, zero_recall)),
            lowest=float(recall.min()),
            lowest_class=lowest_class,
            num_zero=int((recall == 0).sum()),
            accuracy=float(correct.sum() / test_counts.sum()),
            train_counts=None if counts is None else _frozen(counts),
            class_names=names,
            group_sizes=sizes,
            intervals=intervals,
            excluded_classes=tuple(int(c) for c in empty),
            zero_recall=float(zero_recall),
            many_threshold=many_threshold,
            few_threshold=few_threshold,
            bootstrap=int(bootstrap),
            seed=int(seed),
            **groups,
        )

    def class_name(self, index: int) -> str:
        """The name of class ``index`` (its index as text when no names are known)."""
        return self.class_names[index] if self.class_names else str(index)

    def per_class_table(self) -> list[dict[str, Any]]:
        """One row per class: class, name, group, train_count, test_count, correct, recall.

        ``name`` is None without class names, ``group`` and ``train_count`` are None without
        training counts, ``recall`` is None for an excluded class.
        """
        group_of = [None] * self.num_classes
        if self.train_counts is not None:
            for name, mask in group_masks(self.train_counts, self.many_threshold, self.few_threshold).items():
                for c in np.flatnonzero(mask):
                    group_of[c] = name
        return [
            {
                "class": c,
                "name": self.class_names[c] if self.class_names else None,
                "group": group_of[c],
                "train_count": None if self.train_counts is None else int(self.train_counts[c]),
                "test_count": int(self.test_counts[c]),
                "correct": int(self.correct[c]),
                "recall": None if np.isnan(self.per_class[c]) else float(self.per_class[c]),
            }
            for c in range(self.num_classes)
        ]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary of every number in the report (NaN becomes None).

        With calibration: ``ece``, ``classwise_ece``, ``nll``, ``brier`` at the top level,
        their intervals in ``intervals`` and the details (groups, bins) under ``calibration``.
        """
        result = self._recall_dict()
        if self.calibration is not None:
            details = self.calibration.to_dict()
            result.update({name: details[name] for name in CALIBRATION_METRICS})
            result["intervals"].update(details["intervals"])
            result["calibration"] = details
        return result

    def _recall_dict(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "num_samples": self.num_samples,
            "accuracy": self.accuracy,
            "am": self.am,
            "gm": self.gm,
            "hm": self.hm,
            "lowest": self.lowest,
            "lowest_class": self.lowest_class,
            "lowest_class_name": self.class_name(self.lowest_class),
            "num_zero": self.num_zero,
            "zero_recall_classes": self.zero_recall_classes,
            "many": self.many,
            "medium": self.medium,
            "few": self.few,
            "group_sizes": dict(self.group_sizes),
            "group_rule": self.group_rule,
            "intervals": {name: [low, high] for name, (low, high) in self.intervals.items()},
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "zero_recall": self.zero_recall,
            "many_threshold": self.many_threshold,
            "few_threshold": self.few_threshold,
            "excluded_classes": list(self.excluded_classes),
            "per_class": [None if np.isnan(r) else float(r) for r in self.per_class],
            "correct": self.correct.tolist(),
            "test_counts": self.test_counts.tolist(),
            "train_counts": None if self.train_counts is None else self.train_counts.tolist(),
            "class_names": None if self.class_names is None else list(self.class_names),
        }

    def write_json(self, path: str | os.PathLike, *, overwrite: bool = True) -> None:
        """Write :meth:`to_dict` as JSON, atomically (refuse an existing file unless ``overwrite``)."""
        check_writable(path, overwrite)
        write_json(path, self.to_dict())

    def write_csv(self, path: str | os.PathLike, *, overwrite: bool = True) -> None:
        """Write :meth:`per_class_table` as CSV, atomically (refuse an existing file unless ``overwrite``)."""
        check_writable(path, overwrite)
        write_text(path, per_class_csv(self.per_class_table()))

    def __repr__(self) -> str:
        return (
            f"RecallReport(num_classes={self.num_classes}, num_samples={self.num_samples}, "
            f"accuracy={self.accuracy:.4f}, am={self.am:.4f}, gm={self.gm:.4f}, hm={self.hm:.4f}, "
            f"lowest={self.lowest:.4f} (class {self.lowest_class}), num_zero={self.num_zero})"
        )


def recall_report(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int,
    train_counts: Any = None,
    class_names: Sequence[str] | None = None,
    zero_recall: float = ZERO_RECALL,
    many_threshold: float = MANY_THRESHOLD,
    few_threshold: float = FEW_THRESHOLD,
    bootstrap: int = 0,
    seed: int = 0,
    exclude_empty: bool = False,
    calibration: str | None = None,
) -> RecallReport:
    """Per-class recall, AM/GM/HM, lowest recall, Many/Medium/Few and bootstrap intervals.

    Args:
        y_true: (N,) true labels in ``[0, num_classes)`` (numpy array or torch tensor).
        y_pred: (N,) predicted labels, or (N, C) scores/logits (the argmax is taken).
        num_classes: the number of classes C.
        train_counts, class_names, zero_recall, many_threshold, few_threshold, bootstrap,
        seed, exclude_empty: see :meth:`RecallReport.from_confusion`.
        calibration: ``"logits"`` or ``"probs"``: what the (N, C) ``y_pred`` holds; adds
            ECE, class-wise ECE, NLL and Brier (:mod:`nolb.metrics.calibration`) with the
            same groups, bootstrap and seed.  None (default): recall metrics only.

    Returns:
        The RecallReport.

    Raises:
        NolbError (a ValueError): labels outside ``[0, C)``, NaN scores, mismatched
            lengths, a class with no test sample (unless ``exclude_empty``), bad options.

    Example:
        >>> report = recall_report([0, 0, 1, 1], [0, 1, 1, 1], num_classes=2)
        >>> report.per_class.tolist(), report.am, round(report.gm, 4)
        ([0.5, 1.0], 0.75, 0.7071)
    """
    num_classes = check_num_classes(num_classes)
    if calibration is not None and calibration not in SCORE_KINDS:
        raise NolbError(f"calibration: expected one of {SCORE_KINDS} or None, got {calibration!r}")
    report = RecallReport.from_confusion(
        confusion_matrix(y_true, y_pred, num_classes),
        train_counts=train_counts,
        class_names=class_names,
        zero_recall=zero_recall,
        many_threshold=many_threshold,
        few_threshold=few_threshold,
        bootstrap=bootstrap,
        seed=seed,
        exclude_empty=exclude_empty,
    )
    if calibration is None:
        return report
    if to_numpy(y_pred, "y_pred").ndim != 2:
        raise NolbError("calibration: needs (N, C) scores, got predicted labels")
    details = calibration_report(
        y_true, y_pred, kind=calibration, train_counts=train_counts, many_threshold=many_threshold,
        few_threshold=few_threshold, bootstrap=bootstrap, seed=seed,
    )
    return replace(report, calibration=details)


def per_class_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of per-class rows (the keys of the first row are the columns; None is empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def check_writable(path: str | os.PathLike, overwrite: bool) -> None:
    """Raise NolbError if ``path`` exists and ``overwrite`` is False."""
    if not overwrite and Path(path).exists():
        raise NolbError(f"{path}: already exists (pass overwrite to replace it)")


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array)
    array.setflags(write=False)
    return array
