"""``nolb retrain --features TRAIN.npz --val VAL.npz --test TEST.npz [--out DIR]``.

Stage 2's heads (paper GML, the validation-tuned nolb head, cRT, tau-norm, post-hoc logit
adjustment) on feature files instead of a run directory: a thin layer over
:func:`nolb.estimators.retrain_feature_files`.  ``nolb retrain`` calls
:func:`run_features` when ``--features`` is given; ``--out``, ``--overwrite`` and the
``retrain.*`` keys in :data:`FEATURE_KEYS` (``retrain.lr=0.05``) apply.
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


FEATURE_KEYS = ("epochs", "lr", "batch_size", "weight_decay", "prior_strength", "matmul_dtype", "seed")


def feature_settings(items: list[str]) -> dict:
    """The ``retrain.*`` overrides of feature-file mode (validated like a recipe's), as keywords
    of :func:`nolb.estimators.retrain_feature_files`; defaults are the recipe defaults."""
    from nolb.config import Config, apply_overrides

    for item in items:
        key = item.split("=", 1)[0]
        if "=" not in item or not key.startswith("retrain.") or key.split(".", 1)[1] not in FEATURE_KEYS:
            raise NolbError(f"nolb retrain --features: {item!r} is not one of the keys that apply to feature files: "
                            + ", ".join(f"retrain.{k}=..." for k in FEATURE_KEYS))
    retrain = apply_overrides(Config(), items).retrain
    return {key: getattr(retrain, key) for key in FEATURE_KEYS}


def run_features(args: argparse.Namespace) -> int:
    """Run ``nolb retrain --features``: fit, choose on --val, report on --test."""
    from nolb.estimators.feature_files import retrain_feature_files

    if not args.val or not args.test:
        raise NolbError("nolb retrain --features needs --val VAL.npz (to choose settings) and --test TEST.npz")
    items = [item for item in (args.target, args.config, *args.overrides) if item]
    if items and "=" not in items[0]:
        raise NolbError(f"nolb retrain: give either RUN_DIR ({items[0]}) or --features, not both")
    settings = feature_settings(items)
    out = Path(args.out) if args.out else Path(args.features).with_suffix("").parent / "retrain-features"
    result = retrain_feature_files(args.features, args.val, args.test, out, **settings,
                                   overwrite=bool(args.overwrite), command=["nolb", *sys.argv[1:]])
    print(result.table)
    print(f"report: {out / 'report' / 'report.md'}  record: {out / 'retrain.json'}")
    return 0
