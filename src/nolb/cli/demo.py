"""``nolb demo [--out DIR] [--fast] [--overwrite]``: the whole method on Digits-LT.

Digits-LT is built from scikit-learn's embedded 8x8 digits (nothing is downloaded).  The
demo trains a small CNN with CE (stage 1), re-trains its classifier with the paper-exact
GML, the val-tuned nolb GML and the cRT / LWS / tau-norm baselines (stage 2), builds the
ensemble (stage 3), then prints the comparison table and where the per-class plot is.
``--fast`` shortens every stage (a smoke run; the numbers are not meaningful).
"""

from __future__ import annotations

import argparse

DEMO_RECIPE = "demo_digits.yaml"
FAST_OVERRIDES = ("train.epochs=4", "retrain.views=1", "retrain.epochs=3", "retrain.select_prior_strengths=[0.0,1.0]",
                  "retrain.select_lrs=[0.1]", "retrain.select_samplers=[instance]", "ensemble.temperature_grid=[0.5,1.0,2.0]")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the whole pipeline on Digits-LT in about a minute (CPU, no download)",
        description="Run stage 1 -> 2 -> 3 -> report on Digits-LT and print the table and the plot's path.",
    )
    parser.add_argument("--out", default="nolb-demo", metavar="DIR", help="run directory (default ./nolb-demo)")
    parser.add_argument("--fast", action="store_true", help="a much shorter smoke run (numbers not meaningful)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing demo run directory")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="key=value",
                        help="override a key of the demo recipe (repeatable)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nolb.cli.run import run_and_print
    from nolb.config import load_config

    from pathlib import Path

    from nolb.errors import NolbError

    out = Path(args.out)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:  # the demo has no --resume to suggest
        raise NolbError(f"{out}: a demo run is already there; pass --overwrite to replace it or --out DIR for a new one")
    overrides = [*(FAST_OVERRIDES if args.fast else ()), *args.overrides]
    config = load_config(DEMO_RECIPE, overrides)
    return run_and_print(config, run_dir=args.out, overwrite=args.overwrite, quiet=True)
