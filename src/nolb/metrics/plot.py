"""The picture that shows who is left behind: per-class recall from head to tail.

Classes are sorted by training count (most frequent first; ties keep class order), each
report is one series of per-class recall, and the training counts are drawn on a second,
logarithmic axis.  Dashed lines mark the Many/Medium/Few boundaries.  Drawn with
matplotlib's Agg canvas (no display, no global pyplot state) and written atomically.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from nolb.errors import NolbError
from nolb.metrics.recall import to_numpy
from nolb.metrics.recall_curve import (MARKER_LIMIT, default_window, draw_training_counts, figure_format, rolling_mean,
                                       save_figure)
from nolb.metrics.report import RecallReport, check_writable

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_per_class_recall(
    rows: dict[str, RecallReport],
    path: str | os.PathLike,
    train_counts: Any = None,
    title: str | None = None,
    *,
    overwrite: bool = True,
    dpi: int = 120,
) -> "Figure":
    """Draw per-class recall of each report, classes sorted head to tail, into an image file.

    Args:
        rows: ``{series label: report}``; all reports must have the same number of classes.
        path: the image to write; its suffix names the format (.png, .svg, .pdf, .jpg).
        train_counts: (C,) training images per class; default: the first report's.
            Without any, classes stay in index order and no count axis is drawn.
        title: the figure title.
        overwrite: replace an existing file (otherwise NolbError).
        dpi: resolution of the PNG.

    Returns:
        The matplotlib Figure (already written; returned for inspection or further saving).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise NolbError("plot_per_class_recall: no report to plot")
    figure_format(path)
    check_writable(path, overwrite)
    reports = list(rows.values())
    num_classes = reports[0].num_classes
    if any(r.num_classes != num_classes for r in reports):
        raise NolbError("plot_per_class_recall: the reports have different numbers of classes")
    counts = _counts(train_counts, reports, num_classes)
    order = np.arange(num_classes) if counts is None else np.argsort(-counts, kind="stable")
    position = np.arange(num_classes)

    figure = Figure(figsize=(10, 4.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    if counts is not None:
        draw_training_counts(axis, counts[order], reports[0])
    for n, (label, report) in enumerate(rows.items()):
        recall = 100.0 * report.per_class[order]
        text = f"{label} (HM {100 * report.hm:.2f}, lowest {100 * report.lowest:.2f})"
        if num_classes > MARKER_LIMIT:  # many classes: faint dots and a rolling mean, not a zigzag
            window = default_window(num_classes)
            axis.plot(position, recall, ".", color=f"C{n % 10}", ms=3, alpha=0.35)
            axis.plot(position, rolling_mean(recall, window), "-", color=f"C{n % 10}", lw=1.8,
                      label=f"{text}; line: mean of {window} neighbouring classes")
        else:
            axis.plot(position, recall, "-o", color=f"C{n % 10}", lw=1.2, ms=4, label=text)
    axis.set_ylim(-2, 102)
    axis.set_xlim(-0.5, num_classes - 0.5)
    axis.set_ylabel("per-class recall (%)")
    axis.set_xlabel("classes sorted by training count (head \u2192 tail)" if counts is not None else "class index")
    axis.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=min(3, len(rows)), fontsize="small", frameon=False)
    if title:
        axis.set_title(title)
    save_figure(figure, path)  # PNG, SVG, PDF or a real JPEG, by suffix
    return figure


def _counts(train_counts: Any, reports: list[RecallReport], num_classes: int) -> np.ndarray | None:
    if train_counts is None:
        train_counts = next((r.train_counts for r in reports if r.train_counts is not None), None)
    if train_counts is None:
        return None
    counts = to_numpy(train_counts, "train_counts").astype(np.float64)
    if counts.shape != (num_classes,):
        raise NolbError(f"train_counts: expected {num_classes} values, got shape {counts.shape}")
    return counts
