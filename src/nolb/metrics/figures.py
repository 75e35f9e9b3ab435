"""Figures without a display: a matplotlib Figure on the Agg canvas, saved atomically.

The file format follows the suffix (``.png``, ``.svg``, ``.pdf``, or ``.jpg``/``.jpeg`` for real
JPEG bytes); any other suffix is a one-line :class:`~nolb.errors.NolbError` raised before
anything is drawn.  Every plot of nolb goes through :func:`figure_format` and :func:`save_figure`.
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

FIGURE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpeg", ".jpeg": "jpeg"}


def figure_format(path: str | os.PathLike) -> str:
    """The matplotlib format of ``path`` from its suffix, or NolbError naming the accepted ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise NolbError(f"{path}: cannot write a plot as {suffix or 'a file without a suffix'!r}; "
                        f"use one of {', '.join(FIGURE_FORMATS)}")
    return FIGURE_FORMATS[suffix]


def new_figure(width: float, height: float, dpi: int = 120) -> "Figure":
    """A constrained-layout Figure on its own Agg canvas (no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: "Figure", path: str | os.PathLike) -> None:
    """Write ``figure`` to ``path`` atomically, in the format of its suffix (JPEG on white)."""
    fmt = figure_format(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, **({"facecolor": "white"} if fmt == "jpeg" else {}))
    write_bytes(path, buffer.getvalue())
