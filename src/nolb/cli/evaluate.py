"""`nolb evaluate`: worst-class metrics of one or more prediction files.

A prediction file is an ``.npz`` holding ``labels`` (N,) and either ``logits``/scores
``(N, C)``, ``probs`` (N, C) probabilities or ``pred`` (N,), optionally ``train_counts`` (C,)
and ``class_names`` (C,).  Prints one Markdown row per file (percent) and optionally writes
JSON, a per-class CSV and the head-to-tail recall plot.  Files with ``logits`` (softmax is
applied) or ``probs`` also get ECE, class-wise ECE, NLL and Brier score, and a reliability
diagram with --calibration-plot.  Every file is read and checked before anything is
written, and existing outputs are kept unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nolb import __version__
from nolb.errors import NolbError
from nolb.io import check_output_target, publish_together, write_json, write_text
from nolb.limits import check_at_most, limit
from nolb.metrics import RecallReport, format_notes, format_table, plot_per_class_recall, recall_report
from nolb.metrics.analysis_plots import plot_reliability
from nolb.metrics.figures import figure_format
from nolb.metrics.constants import ZERO_RECALL


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="worst-class metrics (HM, GM, lowest recall, Many/Medium/Few) of prediction files",
        description=__doc__.split("\n\n")[1].replace("\n", " ").replace("``", ""),
    )
    parser.add_argument("files", nargs="+", metavar="PRED.npz", help="prediction files (labels + logits or pred)")
    parser.add_argument("--train-counts", metavar="FILE", help="training images per class (.npy/.npz/.txt/.json); overrides the files' own")
    parser.add_argument("--num-classes", type=int, metavar="C", help="number of classes for files with 'pred' only (default: from train counts or class names)")
    parser.add_argument("--json", metavar="OUT", help="write every report as JSON")
    parser.add_argument("--csv", metavar="OUT", help="write the per-class table (one block of rows per file) as CSV")
    parser.add_argument("--plot", metavar="OUT.png", help="plot per-class recall, head to tail")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="B", help="stratified bootstrap resamples for 95%% intervals (default 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--zero-recall", type=float, default=ZERO_RECALL, metavar="X", help="value replacing recall 0 in GM/HM (default 0.001; 0 = strict)")
    parser.add_argument("--many-threshold", type=float, default=100, metavar="N", help="Many: more than N training images (default 100)")
    parser.add_argument("--few-threshold", type=float, default=20, metavar="N", help="Few: fewer than N training images (default 20)")
    parser.add_argument("--exclude-empty", action="store_true", help="leave out classes with no test sample instead of failing")
    parser.add_argument("--calibration-plot", metavar="OUT", help="reliability diagram of the files with logits or probs (.png/.svg/.pdf)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --json/--csv/--plot outputs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    outputs = [Path(p) for p in (args.json, args.csv, args.plot) if p]
    _check_outputs(outputs, args.overwrite)
    _check_calibration_plot(args, outputs)
    _check_bounds(args)
    if args.plot:
        figure_format(args.plot)  # an unsupported suffix fails before anything is written
    shared_counts = _read_train_counts(Path(args.train_counts)) if args.train_counts else None
    reports: dict[str, RecallReport] = {}
    for path, label in zip(map(Path, args.files), _row_labels(args.files)):
        reports[label] = _evaluate_file(path, shared_counts, args)
    if args.calibration_plot and all(r.calibration is None for r in reports.values()):
        raise NolbError("--calibration-plot: no file has 'logits' or 'probs' (calibration needs scores)")
    print(format_table(reports, intervals=args.bootstrap > 0))
    print()
    for note in format_notes(reports):
        print(note)
    published = outputs + ([Path(args.calibration_plot)] if args.calibration_plot else [])
    with publish_together(published) as staged:  # every output appears, or none (nolb.io)
        temp = dict(zip(published, staged))
        if args.json:
            write_json(temp[Path(args.json)], {
                "nolb_version": __version__,
                "files": {label: {"path": str(path), **report.to_dict()} for (label, report), path in zip(reports.items(), args.files)},
            })
        if args.csv:
            write_text(temp[Path(args.csv)], _per_class_csv(reports))
        if args.plot:
            plot_per_class_recall(reports, temp[Path(args.plot)], title="Per-class recall, head to tail")
        if args.calibration_plot:
            plot_reliability({label: r for label, r in reports.items() if r.calibration is not None},
                             temp[Path(args.calibration_plot)])
    if args.calibration_plot:
        print(f"wrote calibration plot: {args.calibration_plot}")
    for label, path in (("JSON", args.json), ("CSV", args.csv), ("plot", args.plot)):
        if path:
            print(f"wrote {label}: {path}")
    return 0


def _evaluate_file(path: Path, shared_counts: np.ndarray | None, args: argparse.Namespace) -> RecallReport:
    arrays = _read_npz(path)
    if "labels" not in arrays:
        raise NolbError(f"{path}: no 'labels' array (found: {', '.join(sorted(arrays)) or 'none'})")
    scores = next((arrays[k] for k in ("logits", "probs", "scores", "pred") if k in arrays), None)
    if scores is None:
        raise NolbError(f"{path}: needs 'logits' (N, C), 'probs' (N, C) or 'pred' (N,) besides 'labels'")
    if scores.ndim not in (1, 2):
        raise NolbError(f"{path}: scores must have shape (N, C) or predictions (N,), got shape {scores.shape}")
    counts = shared_counts if shared_counts is not None else arrays.get("train_counts")
    names = arrays.get("class_names")
    num_classes = _num_classes(path, scores, counts, names, arrays["labels"], args.num_classes)
    check_at_most(num_classes, "NOLB_MAX_CLASSES", f"{path}: the number of classes")
    if counts is not None and np.asarray(counts).shape != (num_classes,):
        source = args.train_counts if shared_counts is not None else f"{path} 'train_counts'"
        raise NolbError(f"{source}: {np.asarray(counts).size} training counts for {num_classes} classes in {path}")
    try:
        return recall_report(
            arrays["labels"], scores, num_classes=num_classes, train_counts=counts, class_names=names,
            zero_recall=args.zero_recall, many_threshold=args.many_threshold, few_threshold=args.few_threshold,
            bootstrap=args.bootstrap, seed=args.seed, exclude_empty=args.exclude_empty,
            calibration=_calibration_kind(arrays, scores),
        )
    except NolbError as exc:
        raise exc.prefixed(f"{path}: ") from None


_NEEDED_ARRAYS = ("labels", "logits", "probs", "scores", "pred", "train_counts", "class_names")


def _calibration_kind(arrays: dict[str, np.ndarray], scores: np.ndarray) -> str | None:
    """``"logits"`` or ``"probs"`` when the file says what its (N, C) scores are, else None."""
    if scores.ndim != 2:
        return None
    return next((key for key in ("logits", "probs") if key in arrays and arrays[key] is scores), None)


def _check_calibration_plot(args: argparse.Namespace, outputs: list[Path]) -> None:
    if not args.calibration_plot:
        return
    path = Path(args.calibration_plot)
    figure_format(path)
    if path.resolve() in {p.resolve() for p in outputs}:
        raise NolbError(f"{path}: --calibration-plot must differ from the other outputs")
    check_output_target(path, args.overwrite)  # regular files or new paths only, writable folder


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays ``evaluate`` uses (others are never read), each size-checked before reading."""
    if not path.is_file():
        raise NolbError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise NolbError(f"{path}: not an .npz archive (a single .npy array)")
        with data:
            bound = limit("NOLB_MAX_ARRAY_BYTES")
            arrays = {}
            for key in data.files:
                if key not in _NEEDED_ARRAYS:
                    continue
                size = data.zip.getinfo(f"{key}.npy").file_size
                if size > bound:
                    raise NolbError(f"{path}: array {key!r} is {size} bytes, above the limit of {bound} "
                                    "(set NOLB_MAX_ARRAY_BYTES to raise it)")
                arrays[key] = data[key]
            return arrays
    except NolbError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:  # damaged zip member
        raise NolbError(f"{path}: not a readable .npz file ({' '.join(str(exc).split())[:160]})") from None


def _num_classes(path: Path, scores: np.ndarray, counts: Any, names: Any, labels: np.ndarray, given: int | None) -> int:
    if scores.ndim == 2:
        if given is not None and given != scores.shape[1]:
            raise NolbError(f"{path}: logits have {scores.shape[1]} columns but --num-classes is {given}")
        return int(scores.shape[1])
    for candidate in (given, None if counts is None else np.asarray(counts).size, None if names is None else np.asarray(names).size):
        if candidate is not None:
            return int(candidate)
    raise NolbError(f"{path}: has 'pred' but no 'train_counts' or 'class_names': pass --num-classes")


def _read_train_counts(path: Path) -> np.ndarray:
    if not path.is_file():
        raise NolbError(f"{path}: no such file")
    try:
        if path.suffix == ".npy":
            counts = np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise NolbError(f"{path}: not an .npz archive")
            with data:
                key = "train_counts" if "train_counts" in data.files else (data.files[0] if len(data.files) == 1 else None)
                if key is None:
                    raise NolbError(f"{path}: no 'train_counts' array")
                counts = data[key]
        elif path.suffix == ".json":
            from nolb.io import read_json

            value = read_json(path)
            counts = np.asarray(value["train_counts"] if isinstance(value, dict) and "train_counts" in value else value)
        else:
            counts = np.loadtxt(path, ndmin=1)
    except NolbError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise NolbError(f"{path}: unreadable training counts ({' '.join(str(exc).split())[:160]})") from None
    if counts.ndim != 1 or counts.dtype.kind not in "iuf":
        raise NolbError(f"{path}: expected a 1-D list of training counts, got shape {counts.shape}")
    return counts


def _check_outputs(outputs: list[Path], overwrite: bool) -> None:
    if len({p.resolve() for p in outputs}) != len(outputs):
        raise NolbError("--json, --csv and --plot must be different files")
    for path in outputs:
        check_output_target(path, overwrite)  # regular files or new paths only, writable folder


def _check_bounds(args: argparse.Namespace) -> None:
    """Numeric options in range before any file is read (limits in nolb.limits)."""
    if args.bootstrap < 0:
        raise NolbError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    check_at_most(args.bootstrap, "NOLB_MAX_BOOTSTRAP", "--bootstrap")
    if args.num_classes is not None:
        if args.num_classes < 1:
            raise NolbError(f"--num-classes must be >= 1, got {args.num_classes}")
        check_at_most(args.num_classes, "NOLB_MAX_CLASSES", "--num-classes")
    if not 0 <= args.seed < 2**63:
        raise NolbError(f"--seed must be in [0, 2**63), got {args.seed}")
    for name in ("zero_recall", "many_threshold", "few_threshold"):
        if not np.isfinite(getattr(args, name)):
            raise NolbError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(args, name)}")


def _row_labels(files: list[str]) -> list[str]:
    """One distinct row label per file: its stem, else its path, else the path numbered."""
    stems = [Path(f).stem for f in files]
    labels = [stem if stems.count(stem) == 1 else str(Path(f).with_suffix("")) for stem, f in zip(stems, files)]
    labels = [label if labels.count(label) == 1 else str(f) for label, f in zip(labels, files)]
    return [label if labels.count(label) == 1 else f"{label} #{labels[:i].count(label) + 1}"
            for i, label in enumerate(labels)]


def _per_class_csv(reports: dict[str, RecallReport]) -> str:
    buffer = io.StringIO()
    writer = None
    for label, report in reports.items():
        for row in report.per_class_table():
            row = {"predictions": label, **{k: ("" if v is None else v) for k, v in row.items()}}
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
                writer.writeheader()
            writer.writerow(row)
    return buffer.getvalue()
