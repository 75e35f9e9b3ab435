"""Heat maps of a (T1, T2) temperature map with the chosen point marked.

Four panels (validation HM, lowest recall, AM and ECE, in percent) over the grid, T1 (the
original head) on the vertical axis and T2 (the re-trained head) on the horizontal one;
every cell is annotated when the grid is at most 10 x 10.  The chosen point is boxed in
red, (1, 1) -- the default ensemble -- is circled, and the caption states the rule, the
validation values at the choice and, when given, the test values there.
"""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np

from nolb.metrics.figures import figure_format, new_figure, save_figure
from nolb.metrics.report import check_writable
from nolb.metrics.temperature_map import TemperatureChoice, TemperatureMap

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANELS = (("hm", "validation HM (%)", "viridis"), ("lowest", "validation lowest recall (%)", "viridis"),
          ("am", "validation AM (%)", "viridis"), ("ece", "validation ECE (%, lower is better)", "magma_r"))


def plot_temperature_map(
    grid: TemperatureMap,
    choice: TemperatureChoice,
    path: str | os.PathLike,
    *,
    test_values: dict[str, Any] | None = None,
    title: str | None = "Two-head ensemble over (T1, T2)",
    overwrite: bool = True,
) -> "Figure":
    """Draw the four heat maps of ``grid`` with ``choice`` marked (PNG/SVG/PDF by suffix).

    Args:
        grid: the validation map.
        choice: the chosen point (from :func:`~nolb.metrics.temperature_map.select_point`).
        path: the output file.
        test_values: metrics on the test split at the chosen point (fractions), for the caption.
        title: figure title.
        overwrite: replace an existing file (otherwise NolbError).

    Returns:
        The matplotlib Figure (already written).
    """
    figure_format(path)
    check_writable(path, overwrite)
    figure = new_figure(10, 8.6)
    axes = figure.subplots(2, 2)
    annotate = len(grid.t1s) <= 10 and len(grid.t2s) <= 10
    for axis, (key, label, cmap) in zip(axes.ravel(), PANELS):
        values = 100 * grid.values[key]
        image = axis.imshow(values, cmap=cmap, origin="lower", aspect="auto")
        figure.colorbar(image, ax=axis, shrink=0.85)
        axis.set_xticks(range(len(grid.t2s)), [f"{t:g}" for t in grid.t2s])
        axis.set_yticks(range(len(grid.t1s)), [f"{t:g}" for t in grid.t1s])
        axis.set_xlabel("T2 (re-trained head)")
        axis.set_ylabel("T1 (original head)")
        axis.set_title(label, fontsize="medium")
        if annotate:
            digits = 2 if np.nanmax(values) < 10 else 1
            middle = (np.nanmax(values) + np.nanmin(values)) / 2
            for i in range(values.shape[0]):
                for j in range(values.shape[1]):
                    dark = (values[i, j] < middle) if cmap == "viridis" else (values[i, j] > middle)
                    axis.text(j, i, f"{values[i, j]:.{digits}f}", ha="center", va="center", fontsize=7,
                              color="white" if dark else "black")
        i, j = choice.index
        axis.add_patch(_box(j, i))
        if 1.0 in grid.t1s and 1.0 in grid.t2s:
            axis.plot(grid.t2s.index(1.0), grid.t1s.index(1.0), "o", ms=16, mfc="none", mec="white", mew=1.5)
    rule = {"hm": "max validation HM", "nll": "min validation NLL",
            "hm_ece": f"max validation HM with ECE <= {100 * (choice.ece_bound or 0):g}%"}[choice.criterion]
    caption = [f"chosen (red box) by {rule}: T1 = {choice.t1:g}, T2 = {choice.t2:g}; circle: T1 = T2 = 1; "
               f"{grid.space}-space average. Validation at the choice: " + _values_text(choice.validation)]
    if test_values:
        caption.append("Test at the choice: " + _values_text(test_values))
    if choice.note:
        caption.append(choice.note)
    figure.supxlabel("\n".join(textwrap.fill(line, 130) for line in caption), fontsize="small")
    if title:
        figure.suptitle(title)
    save_figure(figure, path)
    return figure


def _values_text(values: dict[str, Any]) -> str:
    parts = [f"{name.upper() if name != 'lowest' else 'lowest'} {100 * values[name]:.2f}"
             for name in ("hm", "lowest", "am", "ece") if values.get(name) is not None]
    if values.get("nll") is not None:
        parts.append(f"NLL {values['nll']:.3f}")
    return ", ".join(parts)


def _box(x: float, y: float):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)
