"""Worst-class metrics for long-tailed recognition.

Per-class recall and its arithmetic, geometric and harmonic means, the lowest recall, the
number of zero-recall classes, Many/Medium/Few groups, stratified bootstrap intervals, a
streaming (and distributed) meter, Markdown tables and the head-to-tail recall plot;
calibration (ECE, class-wise ECE, NLL, Brier) and reliability diagrams.
Exact definitions: docs/METRICS.md.
"""

from nolb.metrics.bootstrap import BOOTSTRAP_METRICS, bootstrap_intervals, bootstrap_metric_samples
from nolb.metrics.calibration import (
    CALIBRATION_METRICS,
    CalibrationReport,
    brier_score,
    calibration_report,
    classwise_calibration_errors,
    expected_calibration_error,
    negative_log_likelihood,
    probabilities,
    reliability_bins,
)
from nolb.metrics.groups import GROUP_NAMES, group_masks, group_rule
from nolb.metrics.meter import RecallMeter
from nolb.metrics.plot import plot_per_class_recall
from nolb.metrics.recall import confusion_matrix, geometric_mean, harmonic_mean
from nolb.metrics.report import RecallReport, recall_report
from nolb.metrics.table import format_notes, format_table

__all__ = [
    "BOOTSTRAP_METRICS",
    "CALIBRATION_METRICS",
    "CalibrationReport",
    "brier_score",
    "calibration_report",
    "classwise_calibration_errors",
    "expected_calibration_error",
    "negative_log_likelihood",
    "probabilities",
    "reliability_bins",
    "GROUP_NAMES",
    "RecallMeter",
    "RecallReport",
    "bootstrap_intervals",
    "bootstrap_metric_samples",
    "confusion_matrix",
    "format_notes",
    "format_table",
    "geometric_mean",
    "group_masks",
    "group_rule",
    "harmonic_mean",
    "plot_per_class_recall",
    "recall_report",
]
