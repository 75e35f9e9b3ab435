"""``nolb predict MODEL INPUT... [--top-k K] [--csv FILE] [--batch-size B] [--device D]``.

MODEL is a nolb model file or a run directory (its final model).  INPUT: image files,
folders (recursive) or list files.  One CSV row per image (to ``--csv`` or standard output);
unreadable files are named on standard error and counted at the end.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict the classes of image files with a trained model",
        description="Apply a model's stored preprocessing to images and write one CSV row per image "
                    "(top-k classes and probabilities; for an ensemble also each head's top-1).",
    )
    parser.add_argument("model", metavar="MODEL", help="a nolb model file, or a run directory (its final model)")
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders (recursive) or list files")
    parser.add_argument("--top-k", type=int, default=5, help="classes per row (default 5)")
    parser.add_argument("--csv", metavar="FILE", help="write the rows here (default: standard output)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nolb.deploy.predict import predict, write_predictions_csv
    from nolb.errors import NolbError

    if not args.inputs:
        raise NolbError("nolb predict needs at least one INPUT (image file, folder or list file)")
    result = predict(args.model, args.inputs, top_k=args.top_k, batch_size=args.batch_size, device=args.device)
    for path, reason in result.skipped:
        print(f"nolb: skipped {path}: {reason}", file=sys.stderr)
    if not result.paths:
        raise NolbError(f"none of the {len(result.skipped)} input files is a readable image")
    if args.csv:
        write_predictions_csv(args.csv, result)
    else:
        sys.stdout.write(result.to_csv())
    where = f" -> {args.csv}" if args.csv else ""
    print(f"predicted {len(result.paths)} images{where}; skipped {len(result.skipped)} unreadable files",
          file=sys.stderr)
    return 0
