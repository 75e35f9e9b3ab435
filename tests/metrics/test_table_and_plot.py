"""format_table / format_notes / plot_per_class_recall."""

from __future__ import annotations

import numpy as np
import pytest

from nolb.errors import NolbError
from nolb.metrics import format_notes, format_table, plot_per_class_recall, recall_report

COUNTS = np.array([50, 400, 8, 150, 30, 3])


def make_reports():
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(6), 10)
    first = np.where(rng.random(60) < 0.7, y_true, 0)
    second = np.where(rng.random(60) < 0.4, y_true, 1)
    return {
        "first": recall_report(y_true, first, num_classes=6, train_counts=COUNTS, bootstrap=50),
        "second": recall_report(y_true, second, num_classes=6, train_counts=COUNTS, bootstrap=50),
    }


def parse_markdown(table: str) -> list[dict[str, str]]:
    lines = table.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_table_shows_every_score_in_percent_with_group_sizes():
    reports = make_reports()
    rows = parse_markdown(format_table(reports))
    assert [row["Predictions"] for row in rows] == ["first", "second"]
    for row, report in zip(rows, reports.values()):
        for column, value in (("Top-1", report.accuracy), ("AM", report.am), ("HM", report.hm),
                              ("GM", report.gm), ("Lowest", report.lowest), ("Many (2)", report.many),
                              ("Medium (2)", report.medium), ("Few (2)", report.few)):
            assert float(row[column]) == pytest.approx(100 * value, abs=0.006), column
        assert int(row["#zero"]) == report.num_zero
        assert row["Worst class"] == str(report.lowest_class)
        assert int(row["N"]) == 60


def test_table_intervals_and_na_for_an_empty_group():
    reports = make_reports()
    row = parse_markdown(format_table(reports, intervals=True))[0]
    low, high = reports["first"].intervals["am"]
    assert row["AM"] == f"{100 * reports['first'].am:.2f} [{100 * low:.2f}, {100 * high:.2f}]"
    tiny = {"all many": recall_report([0, 1], [0, 1], num_classes=2, train_counts=[500, 200])}
    row = parse_markdown(format_table(tiny))[0]
    assert "Medium (0)" not in row and "Few (0)" not in row and row["Many (2)"] == "100.00"  # empty everywhere: left out
    assert "Medium, Few: no class in any row, column left out" in " ".join(format_notes(tiny))


def test_notes_state_the_rule_and_the_correction():
    notes = " ".join(format_notes(make_reports()))
    assert "Many: > 100 training images, Medium: 20-100 (inclusive), Few: < 20" in notes
    assert "replaced by 0.001" in notes and "B = 50" in notes
    bare = " ".join(format_notes({"x": recall_report([0, 1], [0, 1], num_classes=2, zero_recall=0)}))
    assert "no training counts" in bare and "strict" in bare


def test_plot_sorts_classes_head_to_tail_and_writes_a_png(tmp_path):
    reports = make_reports()
    path = tmp_path / "recall.png"
    figure = plot_per_class_recall(reports, path, title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recall_axis = figure.axes[0] if figure.axes[0].get_ylabel().startswith("per-class") else figure.axes[1]
    order = sorted(range(6), key=lambda c: -COUNTS[c])  # naive head-to-tail order
    series = [line for line in recall_axis.get_lines() if not line.get_label().startswith("_")]
    assert len(series) == 2
    for line, report in zip(series, reports.values()):
        np.testing.assert_allclose(line.get_ydata(), [100 * report.per_class[c] for c in order])
    count_axis = next(axis for axis in figure.axes if axis is not recall_axis)
    assert count_axis.get_yscale() == "log"
    with pytest.raises(NolbError, match="already exists"):
        plot_per_class_recall(reports, path, overwrite=False)


def test_plot_without_counts_keeps_class_order(tmp_path):
    report = recall_report([0, 1, 2, 2], [0, 0, 2, 2], num_classes=3)
    figure = plot_per_class_recall({"only": report}, tmp_path / "p.png")
    assert len(figure.axes) == 1
    np.testing.assert_allclose(figure.axes[0].get_lines()[0].get_ydata(), [100, 0, 100])
    with pytest.raises(NolbError, match="different numbers of classes"):
        plot_per_class_recall({"a": report, "b": recall_report([0, 1], [0, 1], num_classes=2)}, tmp_path / "q.png")
