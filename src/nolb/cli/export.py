"""``nolb export MODEL --format onnx|torch-export --out FILE [--overwrite]``.

MODEL is a nolb model file or a run directory (its final model).  Writes FILE (runs with
ONNX Runtime or ``torch.export.load`` alone, dynamic batch, both heads and the temperature
averaging inside) and ``FILE.json`` (preprocessing, class names, outputs).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="export a model to ONNX or torch.export (runs without nolb)",
        description="Write a file that runs without nolb, with its preprocessing description (JSON) beside it.",
    )
    parser.add_argument("model", metavar="MODEL", help="a nolb model file, or a run directory (its final model)")
    parser.add_argument("--format", required=True, choices=("onnx", "torch-export"))
    parser.add_argument("--out", required=True, metavar="FILE", help="the exported file (e.g. model.onnx, model.pt2)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nolb.deploy.export import export_model

    result = export_model(args.model, args.format, args.out, overwrite=args.overwrite)
    print(f"exported {args.format}: {result.path} (outputs {', '.join(result.output_names)}; "
          f"max abs difference to nolb {result.max_abs_diff:.2e})")
    print(f"preprocessing and class names: {result.description_path}")
    return 0
