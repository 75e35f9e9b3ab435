"""Figures without a display: a matplotlib Figure on the Agg canvas, saved atomically.

The file format follows the suffix (``.png``, ``.svg`` or ``.pdf``); any other suffix is a
one-line :class:`~nolb.errors.NolbError` raised before anything is drawn.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from nolb.errors import NolbError
from nolb.io import write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_FORMATS = ("png", "svg", "pdf")


def figure_format(path: str | os.PathLike) -> str:
    """The format of ``path`` from its suffix, or NolbError naming the accepted ones."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FIGURE_FORMATS:
        raise NolbError(f"{path}: unknown figure format {suffix or '(no suffix)'!r}, expected .png, .svg or .pdf")
    return suffix


def new_figure(width: float, height: float, dpi: int = 120) -> "Figure":
    """A constrained-layout Figure on its own Agg canvas (no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: "Figure", path: str | os.PathLike) -> None:
    """Write ``figure`` to ``path`` atomically, in the format of its suffix."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=figure_format(path))
    write_bytes(path, buffer.getvalue())
