"""Per-class recall of several models on one readable picture, at 10 or 1,000 classes.

Classes are sorted by training count (head to tail, the first report's counts).  Each
report is drawn as its per-class recalls (markers up to 30 classes, faint dots beyond) and,
beyond 30 classes, a rolling mean over a window of about 10% of the classes (at most 51), which shows the
trend that a zigzag of 100 or 1,000 single recalls hides.  The worst classes of each report
are labelled with their names, the training counts are a grey log-scale backdrop, dashed
lines mark the Many / Medium / Few boundaries.  Files are written by :mod:`nolb.metrics.figures` in the
format its file suffix names (PNG, SVG, PDF, JPEG) or refuses the suffix in one line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from nolb.errors import NolbError
from nolb.metrics.figures import figure_format, save_figure  # noqa: F401 (re-exported)
from nolb.metrics.groups import group_masks

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nolb.metrics.report import RecallReport

# file suffix -> matplotlib format
MARKER_LIMIT = 30  # up to this many classes: markers and lines; beyond: dots and a rolling mean


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over ``window`` neighbours (fewer at the ends), ignoring NaN entries."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    kernel = np.ones(max(1, int(window)))
    sums = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(np.float64), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def default_window(num_classes: int) -> int:
    """About 10% of the classes, odd, 3 to 51 (11 at 100 classes, 51 at 1,000)."""
    window = min(51, max(3, round(num_classes / 10)))
    return window if window % 2 else window + 1


def plot_recall_comparison(
    rows: dict[str, "RecallReport"],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    worst: int = 3,
    dpi: int = 120,
) -> "Figure":
    """Draw every report's per-class recall, classes sorted by training count, into ``path``.

    Args:
        rows: ``{label: report}``; all with the same number of classes.
        path: the image file (format from its suffix, see :data:`FIGURE_FORMATS`).
        title: the figure title.
        worst: label this many lowest-recall classes of each report.
        dpi: resolution of raster formats.

    Returns:
        The matplotlib Figure (already written).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure_format(path)  # refuse an unknown suffix before drawing
    if not rows:
        raise NolbError("plot_recall_comparison: no report to plot")
    reports = list(rows.values())
    num_classes = reports[0].num_classes
    if any(r.num_classes != num_classes for r in reports):
        raise NolbError("compare: the reports have different numbers of classes "
                        f"({', '.join(f'{k}: {r.num_classes}' for k, r in rows.items())})")
    counts_source = next((r for r in reports if r.train_counts is not None), None)
    counts = None if counts_source is None else np.asarray(counts_source.train_counts, dtype=np.float64)
    order = np.arange(num_classes) if counts is None else np.argsort(-counts, kind="stable")
    position = np.arange(num_classes)
    many = num_classes > MARKER_LIMIT
    window = default_window(num_classes)

    figure = Figure(figsize=(11, 5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    if counts is not None:
        draw_training_counts(axis, counts[order], counts_source, shade="0.88", label_y=103)
    colors = [f"C{i % 10}" for i in range(len(rows))]
    for (label, report), color in zip(rows.items(), colors):
        recall = 100.0 * np.asarray(report.per_class, dtype=np.float64)[order]
        summary = f"{label} (HM {100 * report.hm:.2f}, lowest {100 * report.lowest:.2f}, #zero {report.num_zero})"
        if many:
            axis.plot(position, recall, ".", color=color, ms=3, alpha=0.35)
            axis.plot(position, rolling_mean(recall, window), "-", color=color, lw=2.0,
                      label=f"{summary}; line: mean of {window} neighbouring classes")
        else:
            axis.plot(position, recall, "-o", color=color, lw=1.2, ms=4, label=summary)
        _label_worst(axis, report, recall, order, color, worst)
    axis.set_ylim(-4, 104)
    axis.set_xlim(-0.5, num_classes - 0.5)
    axis.set_ylabel("per-class recall (%)")
    axis.set_xlabel("classes sorted by training count (head \u2192 tail)" if counts is not None else "class index")
    axis.grid(axis="y", alpha=0.3)
    figure.legend(loc="outside upper center", ncols=1, fontsize="small", frameon=False)
    if title:
        axis.set_title(title, fontsize="medium")
    save_figure(figure, path)
    return figure


def _label_worst(axis, report: "RecallReport", recall: np.ndarray, order: np.ndarray, color: str, worst: int) -> None:
    """Name the ``worst`` lowest-recall classes (ties: the rarest first) next to their points."""
    finite = np.flatnonzero(np.isfinite(recall))
    ranked = finite[np.lexsort((-finite, recall[finite]))][:worst]  # lowest recall, then furthest in the tail
    for n, x in enumerate(ranked):
        axis.annotate(f"{report.class_name(int(order[x]))}", (x, recall[x]), xytext=(0, 8 + 9 * n),
                      textcoords="offset points", ha="center", fontsize=7, color=color,
                      arrowprops={"arrowstyle": "-", "color": color, "lw": 0.5})


def draw_training_counts(axis, sorted_counts: np.ndarray, report: "RecallReport", *, shade: str = "0.85",
                         label_y: float = 99) -> None:
    """Behind a per-class plot whose classes are sorted by training count: the counts as a grey
    log-scale area on a twin axis, and the Many/Medium/Few boundaries and names of ``report``."""
    position = np.arange(sorted_counts.size)
    count_axis = axis.twinx()
    count_axis.fill_between(position, sorted_counts, step="mid", color=shade, zorder=0)
    count_axis.set_yscale("log")
    positive = sorted_counts[sorted_counts > 0]
    count_axis.set_ylim(bottom=max(0.5, positive.min() / 2) if positive.size else 0.5)
    count_axis.set_ylabel("training images (log scale)", color="0.45")
    axis.set_zorder(count_axis.get_zorder() + 1)
    axis.patch.set_visible(False)
    masks = group_masks(sorted_counts, report.many_threshold, report.few_threshold)
    for name in ("many", "medium"):
        members = np.flatnonzero(masks[name])
        if members.size and members[-1] + 1 < sorted_counts.size:
            axis.axvline(members[-1] + 0.5, color="0.5", ls="--", lw=0.8)
    for name, mask in masks.items():
        members = np.flatnonzero(mask)
        if members.size:
            axis.text(members.mean(), label_y, name.capitalize(), ha="center", va="top", fontsize="small", color="0.35")
