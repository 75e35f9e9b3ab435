"""``nolb retrain --features TRAIN.npz --val VAL.npz --test TEST.npz [--out DIR]``.

Stage 2's heads (paper GML, the validation-tuned nolb head, cRT, tau-norm, post-hoc logit
adjustment) on feature files instead of a run directory: a thin layer over
:func:`nolb.estimators.retrain_feature_files`.  ``nolb retrain`` calls
:func:`run_features` when ``--features`` is given; its other options (``--epochs``,
``--lr``, ``--batch-size``, ``--weight-decay``, ``--prior-strength``, ``--matmul-dtype``,
``--seed``, ``--out``, ``--overwrite``) apply.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nolb.errors import NolbError


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--features``, ``--val`` and ``--test`` to ``nolb retrain``'s parser."""
    group = parser.add_argument_group(
        "feature files", "train heads on given features (.npz with 'features' or 'logits', 'labels', "
        "optional 'train_counts') instead of a run directory")
    group.add_argument("--features", metavar="TRAIN.npz", help="training features (fit the heads)")
    group.add_argument("--val", metavar="VAL.npz", help="validation features (choose settings)")
    group.add_argument("--test", metavar="TEST.npz", help="test features (the report)")


def run_features(args: argparse.Namespace) -> int:
    """Run ``nolb retrain --features``: fit, choose on --val, report on --test."""
    from nolb.estimators.feature_files import retrain_feature_files

    if not args.val or not args.test:
        raise NolbError("nolb retrain --features needs --val VAL.npz (to choose settings) and --test TEST.npz")
    if getattr(args, "target", None):
        raise NolbError(f"nolb retrain: give either RUN_DIR ({args.target}) or --features, not both")
    out = Path(args.out) if args.out else Path(args.features).with_suffix("").parent / "retrain-features"
    value = lambda name, default: default if getattr(args, name, None) is None else getattr(args, name)  # noqa: E731
    result = retrain_feature_files(
        args.features, args.val, args.test, out,
        epochs=value("epochs", 10), lr=value("lr", 0.02), batch_size=value("batch_size", 128),
        weight_decay=value("weight_decay", 2e-4), prior_strength=value("prior_strength", 1.0),
        matmul_dtype=value("matmul_dtype", "float32"), seed=value("seed", 0), overwrite=bool(args.overwrite),
        command=["nolb", *sys.argv[1:]],
    )
    print(result.table)
    print(f"report: {out / 'report' / 'report.md'}  record: {out / 'retrain.json'}")
    return 0
