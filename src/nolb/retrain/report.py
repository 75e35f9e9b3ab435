"""The comparison report: a Markdown table, a per-class CSV and the per-class recall plot.

Rows (in this order when present): the base model, the paper-exact GML head, the ``nolb``
head (settings chosen on validation), the ensemble, then the baselines (cRT, LWS,
tau-norm).  Columns come from :func:`nolb.metrics.format_table`: Acc, AM, HM, GM, Lowest,
#zero, Many/Medium/Few, with 95% bootstrap intervals over test images.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import torch

from nolb.io import write_json, write_text
from nolb.metrics import RecallReport, format_notes, format_table, plot_per_class_recall, recall_report


@dataclass
class ReportFiles:
    """Where the report went and its Markdown text."""

    markdown: Path
    per_class_csv: Path
    plot: Path
    metrics: Path
    table: str


def reports_from_scores(
    scores: dict[str, torch.Tensor], labels: torch.Tensor, num_classes: int, *,
    train_counts=None, class_names=None, bootstrap: int = 1000, seed: int = 0,
) -> dict[str, RecallReport]:
    """One :class:`RecallReport` per row from its (N, C) test scores."""
    return {
        name: recall_report(labels.numpy(), value.float().numpy(), num_classes=num_classes, train_counts=train_counts,
                            class_names=class_names, bootstrap=bootstrap, seed=seed)
        for name, value in scores.items()
    }


def per_class_comparison_csv(rows: dict[str, RecallReport]) -> str:
    """CSV text: one line per class with its counts and each row's recall."""
    first = next(iter(rows.values()))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "name", "train_count", "test_count", *[f"recall[{name}]" for name in rows]])
    train = first.train_counts if first.train_counts is not None else [None] * first.num_classes
    for c in range(first.num_classes):
        writer.writerow([c, first.class_name(c), "" if train[c] is None else int(train[c]), int(first.test_counts[c]),
                         *[f"{float(report.per_class[c]):.6f}" for report in rows.values()]])
    return buffer.getvalue()


def write_report(rows: dict[str, RecallReport], out_dir: str | Path, *, title: str, notes: list[str] = ()) -> ReportFiles:
    """Write ``report.md``, ``per_class.csv``, ``per_class_recall.png`` and ``metrics.json``.

    Args:
        rows: ``{row label: test report}`` in display order.
        out_dir: the report folder.
        title: heading of the Markdown file and the plot.
        notes: extra lines below the table (e.g. chosen settings).

    Returns:
        The :class:`ReportFiles`.
    """
    out = Path(out_dir)
    table = format_table(rows, intervals=True)
    first = next(iter(rows.values()))
    legend = format_notes(rows)  # zero-recall correction, group rule, intervals: what the table means
    text = "\n".join([f"# {title}", "", table, "", *[f"- {line}" for line in [*notes, *legend]]]).rstrip() + "\n"
    files = ReportFiles(out / "report.md", out / "per_class.csv", out / "per_class_recall.png", out / "metrics.json", table)
    write_text(files.markdown, text)
    write_text(files.per_class_csv, per_class_comparison_csv(rows))
    plot_per_class_recall(rows, files.plot, train_counts=first.train_counts, title=title)
    write_json(files.metrics, {name: report.to_dict() for name, report in rows.items()})
    return files
