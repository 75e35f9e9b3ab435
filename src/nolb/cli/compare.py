"""``nolb compare RUN_OR_REPORT... [--out DIR] [--plot FILE]``: several models side by side.

Each input is a prediction file (``.npz`` with labels + logits or pred, as for ``nolb
evaluate``), a report file (``metrics.json`` of a ``nolb run`` report, the JSON of ``nolb
evaluate --json``, or a per-class CSV with ``test_count`` and ``correct`` columns), or a run
directory (stage-1 ``per_class.csv`` and, if present, the ``nolb run`` report's
``metrics.json``; every row of it).  The command writes one Markdown table (``compare.md``:
the scores of every row, then the worst classes of each) and one per-class recall plot
(``per_class_recall.png``, or the format ``--plot`` names: .png, .svg, .pdf, .jpg), classes
sorted by training count, readable at 100 and 1,000 classes.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from nolb.errors import NolbError

REPORT_NAMES = ("metrics.json", "report/metrics.json")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="one table and one per-class plot for several runs or prediction files",
        description="Compare runs, report files or prediction files: a Markdown table (compare.md) and a "
                    "per-class recall plot sorted by training count.",
    )
    parser.add_argument("inputs", nargs="+", metavar="RUN_OR_REPORT",
                        help="run directory, metrics.json / evaluate --json file, per-class CSV, or predictions .npz")
    parser.add_argument("--out", default="compare", metavar="DIR", help="output folder (default ./compare)")
    parser.add_argument("--plot", default="per_class_recall.png", metavar="FILE",
                        help="plot file name inside DIR (or a path); .png, .svg, .pdf or .jpg")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="B",
                        help="bootstrap resamples for 95%% intervals in the table (default 0: none)")
    parser.add_argument("--worst", type=int, default=3, metavar="K", help="worst classes to list and label (default 3)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nolb.io import write_text
    from nolb.metrics import format_notes, format_table
    from nolb.metrics.recall_curve import figure_format, plot_recall_comparison

    out = Path(args.out)
    plot = Path(args.plot) if Path(args.plot).parent != Path(".") else out / args.plot
    figure_format(plot)
    markdown = out / "compare.md"
    for path in (markdown, plot):
        if path.exists() and not args.overwrite:
            raise NolbError(f"{path}: already exists; pass --overwrite to replace it")
    if args.bootstrap < 0 or args.worst < 0:
        raise NolbError("--bootstrap and --worst must be >= 0")
    rows: dict[str, object] = {}
    for item in args.inputs:
        for label, report in load_reports(Path(item), bootstrap=args.bootstrap).items():
            rows[_unique(label, rows)] = report
    sizes = {label: r.num_classes for label, r in rows.items()}
    if len(set(sizes.values())) != 1:
        raise NolbError("compare: the inputs have different numbers of classes ("
                        + ", ".join(f"{k}: {v}" for k, v in sizes.items()) + ")")
    table = format_table(rows, intervals=args.bootstrap > 0)
    lines = ["# Comparison", "", table, "", *[f"- {note}" for note in format_notes(rows)], "",
             f"## Worst {args.worst} classes of each row (recall %, training images; ties: the rarest class)", "",
             "| Row | " + " | ".join(f"#{i + 1}" for i in range(args.worst)) + " |",
             "| --- |" + " --- |" * args.worst]
    for label, report in rows.items():
        lines.append(f"| {label} | " + " | ".join(_worst_cells(report, args.worst)) + " |")
    lines += ["", f"Plot: {plot.name} (classes sorted by training count, head to tail)."]
    plot_recall_comparison(rows, plot, title=f"Per-class recall of {len(rows)} models", worst=args.worst)
    write_text(markdown, "\n".join(lines) + "\n")
    print(table)
    print(f"wrote table: {markdown}")
    print(f"wrote plot:  {plot}")
    return 0


def load_reports(path: Path, *, bootstrap: int = 0) -> dict:
    """``{row label: RecallReport}`` for one input (see the module docstring)."""
    if path.is_dir():
        found = {}
        for name in REPORT_NAMES:
            if (path / name).is_file() and _is_report_json(path / name):
                found.update({f"{path.name}: {k}": v for k, v in _from_json(path / name, bootstrap).items()})
        if not any(k.endswith(": base") for k in found) and (path / "per_class.csv").is_file():
            found = {f"{path.name}": _from_csv(path / "per_class.csv", bootstrap), **found}
        if not found:
            raise NolbError(f"{path}: no per_class.csv or metrics.json with per-class counts in this run directory")
        return found
    if not path.is_file():
        raise NolbError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return {path.stem: _from_npz(path, bootstrap)}
    if suffix == ".json":
        return _from_json(path, bootstrap)
    if suffix == ".csv":
        return {path.stem: _from_csv(path, bootstrap)}
    raise NolbError(f"{path}: expected a run directory, .npz predictions, a .json report or a per-class .csv")


def _is_report_json(path: Path) -> bool:
    """Whether ``path`` holds per-class reports (a stage-1 metrics.json holds summaries only)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    data = data.get("files", data) if isinstance(data, dict) else data
    return isinstance(data, dict) and any(isinstance(v, dict) and "correct" in v for v in data.values())


def _from_npz(path: Path, bootstrap: int):
    from nolb.metrics import recall_report

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise NolbError(f"{path}: not a readable .npz file ({' '.join(str(exc).split())[:120]})") from None
    scores = next((arrays[k] for k in ("logits", "scores", "pred") if k in arrays), None)
    if "labels" not in arrays or scores is None:
        raise NolbError(f"{path}: needs 'labels' and 'logits' (or 'pred')")
    counts, names = arrays.get("train_counts"), arrays.get("class_names")
    num_classes = scores.shape[1] if scores.ndim == 2 else next(
        (np.asarray(a).size for a in (counts, names) if a is not None), int(arrays["labels"].max()) + 1)
    try:
        return recall_report(arrays["labels"], scores, num_classes=int(num_classes), train_counts=counts,
                             class_names=None if names is None else [str(n) for n in names],
                             bootstrap=bootstrap, exclude_empty=True)
    except NolbError as exc:
        raise exc.prefixed(f"{path}: ") from None


def _from_json(path: Path, bootstrap: int) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NolbError(f"{path}: not a readable JSON file ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("files"), dict):  # nolb evaluate --json
        data = data["files"]
    if not isinstance(data, dict):
        raise NolbError(f"{path}: expected a JSON object of reports")
    entries = {k: v for k, v in data.items() if isinstance(v, dict) and "correct" in v and "test_counts" in v}
    if not entries:
        raise NolbError(f"{path}: no report with 'correct' and 'test_counts' per class")
    return {label: _from_counts(path, d["correct"], d["test_counts"], d.get("train_counts"), d.get("class_names"),
                                d.get("many_threshold", 100), d.get("few_threshold", 20), bootstrap)
            for label, d in entries.items()}


def _from_csv(path: Path, bootstrap: int):
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"test_count", "correct"} <= set(rows[0]):
        raise NolbError(f"{path}: a per-class CSV needs 'test_count' and 'correct' columns")
    try:
        correct = [int(r["correct"]) for r in rows]
        tests = [int(r["test_count"]) for r in rows]
        train = [int(r["train_count"]) for r in rows] if rows[0].get("train_count") not in (None, "") else None
    except ValueError as exc:
        raise NolbError(f"{path}: a count is not an integer ({exc})") from None
    names = [r.get("name") or str(i) for i, r in enumerate(rows)]
    return _from_counts(path, correct, tests, train, names, 100, 20, bootstrap)


def _from_counts(path: Path, correct, tests, train, names, many, few, bootstrap: int):
    """A RecallReport from per-class counts: the confusion matrix keeps each class's correct
    images on its diagonal and its errors in one other column (every recall metric and the
    accuracy depend on the diagonal and the row sums only)."""
    from nolb.metrics import RecallReport

    correct = np.asarray([0 if c is None else c for c in correct], dtype=np.int64)
    tests = np.asarray([0 if t is None else t for t in tests], dtype=np.int64)
    if correct.shape != tests.shape or (correct > tests).any() or (correct < 0).any():
        raise NolbError(f"{path}: per-class counts are inconsistent (correct must lie in 0..test count)")
    num_classes = correct.size
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    confusion[np.arange(num_classes), np.arange(num_classes)] = correct
    if num_classes > 1:
        confusion[np.arange(num_classes), (np.arange(num_classes) + 1) % num_classes] += tests - correct
    try:
        return RecallReport.from_confusion(confusion, train_counts=train, class_names=names, many_threshold=many,
                                           few_threshold=few, bootstrap=bootstrap, exclude_empty=True)
    except NolbError as exc:
        raise exc.prefixed(f"{path}: ") from None


def _worst_cells(report, k: int) -> list[str]:
    recall = np.asarray(report.per_class, dtype=np.float64)
    train = report.train_counts
    rarity = np.zeros_like(recall) if train is None else np.asarray(train, dtype=np.float64)
    keys = (rarity, np.where(np.isfinite(recall), recall, np.inf))  # lowest recall, ties: the rarest class
    classes = [c for c in np.lexsort(keys)[:k] if np.isfinite(recall[c])]
    cells = [f"{report.class_name(int(c))}: {100 * recall[c]:.1f}"
             + ("" if train is None else f" ({int(train[c])})") for c in classes]
    return cells + [""] * (k - len(cells))


def _unique(label: str, taken: dict) -> str:
    candidate, n = label, 2
    while candidate in taken:
        candidate, n = f"{label} ({n})", n + 1
    return candidate
