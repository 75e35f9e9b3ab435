"""Two analysis figures: reliability diagrams and the sorted per-class recall distribution.

* :func:`plot_reliability`: for each row, the accuracy against the mean confidence of each
  non-empty top-label confidence bin (the diagonal is perfect calibration), and below it
  the number of test images per bin (log scale), so sparsely filled bins are visible.
* :func:`plot_recall_distribution`: each row's per-class recalls sorted from the worst
  class up, against the class's rank as a fraction of the classes -- the same axes at 10,
  100 or 1,000 classes; a flatter, higher curve is a more uniform model (the paper's
  "no one left behind" at a glance).  Markers are drawn only up to 30 classes.

Both take ``{row label: report}`` and write PNG, SVG or PDF by suffix (:mod:`nolb.metrics.figures`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from nolb.errors import NolbError
from nolb.metrics.calibration import CalibrationReport
from nolb.metrics.figures import figure_format, new_figure, save_figure
from nolb.metrics.report import RecallReport, check_writable

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_reliability(
    rows: dict[str, RecallReport | CalibrationReport],
    path: str | os.PathLike,
    title: str | None = "Reliability diagram (top-label confidence)",
    *,
    overwrite: bool = True,
) -> "Figure":
    """Reliability diagram of several prediction sets on one figure.

    Args:
        rows: ``{label: RecallReport with calibration, or CalibrationReport}``.
        path: the output file (``.png``/``.svg``/``.pdf``).
        title: figure title.
        overwrite: replace an existing file (otherwise NolbError).

    Returns:
        The matplotlib Figure (already written).
    """
    figure_format(path)
    check_writable(path, overwrite)
    calibrations = {label: _calibration_of(label, row) for label, row in rows.items()}
    if not calibrations:
        raise NolbError("plot_reliability: no prediction set to plot")
    figure = new_figure(6.4, 6.8 + 0.22 * len(calibrations))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1.2))
    top.plot([0, 1], [0, 1], color="0.5", ls="--", lw=1, label="perfect calibration")
    num = len(calibrations)
    for index, (label, calibration) in enumerate(calibrations.items()):
        bins = calibration.bins
        filled = bins.counts > 0
        line = top.plot(bins.confidence[filled], bins.accuracy[filled], "-o", ms=4, lw=1.3,
                        label=f"{label} (ECE {100 * calibration.ece:.2f}, NLL {calibration.nll:.3f})")[0]
        width = (bins.edges[1] - bins.edges[0]) / num
        left = bins.edges[:-1] + index * width
        bottom.bar(left, bins.counts, width=width, align="edge", color=line.get_color(), alpha=0.8)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy in bin")
    top.grid(alpha=0.3)
    figure.legend(loc="outside lower center", fontsize="small", ncols=1 if num > 2 else 2, frameon=False)
    bottom.set_yscale("log")
    bottom.set_ylabel("images per bin")
    bottom.set_xlabel("mean top-label confidence in bin")
    bottom.grid(axis="y", alpha=0.3)
    if title:
        top.set_title(title)
    save_figure(figure, path)
    return figure


def plot_recall_distribution(
    rows: dict[str, RecallReport],
    path: str | os.PathLike,
    title: str | None = "Per-class recall, sorted from the worst class",
    *,
    overwrite: bool = True,
) -> "Figure":
    """Sorted per-class recall curve of each row (classes left out as empty are skipped).

    Args:
        rows: ``{label: RecallReport}`` (e.g. before / after stage 2 / ensemble).
        path: the output file (``.png``/``.svg``/``.pdf``).
        title: figure title.
        overwrite: replace an existing file (otherwise NolbError).

    Returns:
        The matplotlib Figure (already written).
    """
    figure_format(path)
    check_writable(path, overwrite)
    if not rows:
        raise NolbError("plot_recall_distribution: no report to plot")
    figure = new_figure(7.5, 4.5)
    axis = figure.add_subplot()
    for label, report in rows.items():
        recall = np.sort(report.per_class[~np.isnan(report.per_class)])
        rank = (np.arange(recall.size) + 0.5) / recall.size
        line = axis.step(rank, 100 * recall, where="mid", lw=1.4, label=(
            f"{label} (HM {100 * report.hm:.2f}, lowest {100 * report.lowest:.2f}, #zero {report.num_zero})"))[0]
        if recall.size <= 30:
            axis.plot(rank, 100 * recall, "o", ms=3.5, color=line.get_color())
    axis.set_xlim(0, 1)
    axis.set_ylim(-2, 102)
    axis.set_xlabel("class rank / number of classes (worst \u2192 best)")
    axis.set_ylabel("per-class recall (%)")
    for quantile in (0.1, 0.5):
        axis.axvline(quantile, color="0.7", lw=0.8, ls=":")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small", loc="lower right")
    if title:
        axis.set_title(title)
    save_figure(figure, path)
    return figure


def _calibration_of(label: str, row: RecallReport | CalibrationReport) -> CalibrationReport:
    if isinstance(row, CalibrationReport):
        return row
    if row.calibration is None:
        raise NolbError(f"plot_reliability: {label!r} has no calibration (it needs logits or probabilities)")
    return row.calibration
