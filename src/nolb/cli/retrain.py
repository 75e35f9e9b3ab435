"""``nolb retrain RUN_DIR [CONFIG] [key=value ...]``: stage 2, new classifiers on a frozen backbone.

The keys are the ``retrain`` section of the recipes (``retrain.lr=0.05``,
``retrain.method=crt``, ``retrain.loss_options.aggregate=log_then_mean``, ...).  Trains the
paper-exact head, the validation-chosen nolb head and the ``retrain.baselines``, and writes
``RUN_DIR/retrain/heads/<key>.safetensors``, ``retrain.json`` and ``report/`` (where ``nolb
ensemble RUN_DIR`` finds them).  A plain checkpoint file works too: ``nolb retrain FILE
CONFIG`` (CONFIG names its ``model.name`` and data; outputs go to ``--out``, default
``retrain-<file>``).  Features are cached and reused while backbone, data and views match.
"""

from __future__ import annotations

import argparse

from nolb.cli._stage_config import add_stage_parser


def register(subparsers: argparse._SubParsersAction) -> None:
    from nolb.cli.retrain_features import add_feature_arguments, run_features

    parser = add_stage_parser(subparsers, "retrain", _run, target_optional=True)
    add_feature_arguments(parser)  # feature-file mode (issue 17): nolb retrain --features ...
    stage_run = parser.get_default("func")

    def run(args: argparse.Namespace) -> int:
        if args.features:
            return run_features(args)
        if not args.target:
            from nolb.errors import NolbError

            raise NolbError("nolb retrain needs RUN_DIR (or --features TRAIN.npz --val VAL.npz --test TEST.npz)")
        return stage_run(args)

    parser.set_defaults(func=run)


def _run(args: argparse.Namespace, config) -> int:
    from nolb.retrain.pipeline import retrain_run

    result = retrain_run(args.target, config, out=args.out, overwrite=args.overwrite, device=args.device,
                         log=(lambda line: None) if args.quiet else print)
    if result is None:  # a rank > 0 under torchrun: rank 0 prints
        return 0
    stage2, report = result
    print(report.table)
    heads = report.markdown.parent.parent / "heads"
    print(f"heads:  {', '.join(f'{heads / key}.safetensors' for key in stage2.heads)}")
    print(f"report: {report.markdown}  plot: {report.plot}")
    return 0
