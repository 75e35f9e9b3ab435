"""Markdown tables of several RecallReports side by side (all numbers in percent)."""

from __future__ import annotations

from nolb.metrics.groups import GROUP_NAMES
from nolb.metrics.report import RecallReport

_SCORES = (("Top-1", "accuracy"), ("AM", "am"), ("HM", "hm"), ("GM", "gm"), ("Lowest", "lowest"))
# Calibration columns (shown when a row has calibration): header, key, as percent?
_CALIBRATION = (("ECE", "ece", True), ("cw-ECE", "classwise_ece", True), ("NLL", "nll", False), ("Brier", "brier", False))


def percent(value: float | None, digits: int = 2) -> str:
    """A fraction as a percentage with ``digits`` decimals; None becomes "n/a"."""
    return "n/a" if value is None else f"{100.0 * value:.{digits}f}"


def format_table(rows: dict[str, RecallReport], intervals: bool = False) -> str:
    """One Markdown row per report: Top-1, AM, HM, GM, Lowest (and its class), #zero, groups,
    and, when any report has calibration, ECE and class-wise ECE (percent), NLL and Brier
    (three decimals; "n/a" for a row without).

    Args:
        rows: ``{row label: report}``, in display order.
        intervals: append the 95% bootstrap interval ``[low, high]`` to each score that has one.

    Returns:
        The table as text (percent, two decimals; an empty group reads "n/a").  Group
        sizes (number of classes) are given in the header when every row shares them,
        otherwise in each cell.
    """
    reports = list(rows.values())
    groups = _shown_groups(reports)
    has_groups = bool(groups)
    shared_sizes = len({tuple(sorted(r.group_sizes.items())) for r in reports}) == 1
    header = ["Predictions", "N"] + [label for label, _ in _SCORES] + ["Worst class", "#zero"]
    if has_groups:
        for name in groups:
            size = reports[0].group_sizes.get(name)
            header.append(f"{name.capitalize()} ({size})" if shared_sizes else name.capitalize())
    has_calibration = any(r.calibration is not None for r in reports)
    if has_calibration:
        header += [label for label, _, _ in _CALIBRATION]
    lines = [_row(header), _row(["---"] + ["---:"] * (len(header) - 1))]
    for label, report in rows.items():
        cells = [label, str(report.num_samples)]
        for _, key in _SCORES:
            cell = percent(getattr(report, key))
            if intervals and key in report.intervals:
                low, high = report.intervals[key]
                cell += f" [{percent(low)}, {percent(high)}]"
            cells.append(cell)
        cells += [report.class_name(report.lowest_class), str(report.num_zero)]
        if has_groups:
            for name in groups:
                cell = percent(getattr(report, name))
                if not shared_sizes:
                    cell += f" ({report.group_sizes.get(name, 0)})" if report.group_sizes else ""
                cells.append(cell)
        if has_calibration:
            cells += _calibration_cells(report, intervals)
        lines.append(_row(cells))
    return "\n".join(lines)


def _calibration_cells(report: RecallReport, intervals: bool) -> list[str]:
    calibration = report.calibration
    if calibration is None:
        return ["n/a"] * len(_CALIBRATION)
    cells = []
    for _, key, as_percent in _CALIBRATION:
        show = percent if as_percent else (lambda v: "n/a" if v is None else f"{v:.3f}")
        cell = show(getattr(calibration, key))
        if intervals and key in calibration.intervals:
            low, high = calibration.intervals[key]
            cell += f" [{show(low)}, {show(high)}]"
        cells.append(cell)
    return cells


def _shown_groups(reports: list[RecallReport]) -> list[str]:
    """The Many/Medium/Few columns to print: those with a class in at least one row (a group
    that is empty in every row would be a column of n/a)."""
    return [name for name in GROUP_NAMES if any(r.group_sizes.get(name) for r in reports)]


def format_notes(rows: dict[str, RecallReport]) -> list[str]:
    """Lines that state the conventions behind a table (zero-recall correction, group rule, intervals)."""
    reports = list(rows.values())
    first = reports[0]
    notes = [
        "Recall in percent. Top-1: accuracy over test images; AM: mean per-class recall "
        "(= Top-1 on a balanced test set); Lowest: the single worst class's recall."
    ]
    corrections = sorted({r.zero_recall for r in reports})
    notes.append(
        "HM/GM: harmonic/geometric mean of per-class recalls with a recall of 0 replaced by "
        + " / ".join(f"{c:g}" for c in corrections)
        + (" (strict values)" if corrections == [0.0] else "")
        + "; #zero: classes with recall 0."
    )
    rules = sorted({r.group_rule for r in reports if r.group_rule})
    if rules:
        empty = [name.capitalize() for name in GROUP_NAMES if name not in _shown_groups(reports)]
        notes.append("Groups by training count: " + "; ".join(rules) + ". An empty group is n/a"
                     + (f"; {', '.join(empty)}: no class in any row, column left out." if empty else "."))
    else:
        notes.append("Many/Medium/Few not shown: no training counts given.")
    if any(r.intervals for r in reports):
        notes.append(
            f"[low, high]: 95% stratified bootstrap interval over test images "
            f"(B = {first.bootstrap}, seed {first.seed})."
        )
    calibrated = [r.calibration for r in reports if r.calibration is not None]
    if calibrated:
        sources = sorted({c.source for c in calibrated})
        notes.append(
            f"ECE: top-label expected calibration error ({calibrated[0].num_bins} equal-width confidence bins), "
            "cw-ECE: mean one-vs-rest ECE over classes (both in percent); NLL: mean negative log-likelihood "
            "(nats); Brier: mean sum of squared errors over classes; from "
            + " and ".join("softmax of the logits" if s == "logits" else "the given probabilities" for s in sources)
            + "."
        )
        for note in sorted({n for c in calibrated for n in c.notes}):
            notes.append(note)
        biased = [label for label, r in rows.items() if r.calibration is not None and any(
            not low <= getattr(r.calibration, k) <= high for k, (low, high) in r.calibration.intervals.items())]
        if biased:
            notes.append(
                f"{', '.join(biased)}: a calibration interval excludes its estimate: resampling duplicates images, "
                "which biases binned ECE upward; read those intervals as a spread, not a location."
            )
    for label, report in rows.items():
        outside = [k for k, (low, high) in report.intervals.items() if not low <= getattr(report, k) <= high]
        if outside:
            notes.append(
                f"{label}: the interval of {', '.join(outside)} excludes the estimate: classes with very few "
                "test images often drop to recall 0 when resampled, so these values are unstable."
            )
        if report.excluded_classes:
            notes.append(f"{label}: left out {len(report.excluded_classes)} class(es) with no test sample.")
    return notes


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
