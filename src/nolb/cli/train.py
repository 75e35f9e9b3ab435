"""``nolb train CONFIG.yaml [key=value ...] [--out RUN_DIR] [--resume RUN_DIR [--allow-changed KEY]] [--overwrite]``.

Stage 1: train a base model.  Works the same under ``torchrun --nproc_per_node=N -m nolb
train ...`` (the global batch and learning rate in the config are split across processes).
"""

from __future__ import annotations

import argparse
import sys

from nolb.errors import NolbError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="stage 1: train a base model on long-tailed data",
        description="Train a base model (stage 1). CONFIG is a YAML recipe or a packaged recipe name "
                    "(e.g. digits_lt); key=value pairs override it (train.epochs=30 optim.lr=0.05).",
    )
    parser.add_argument("config", nargs="?", help="recipe YAML file or packaged recipe name (omit with --resume)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/<data>-<model>-<loss>-seed<seed>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run directory (only one nolb made: it holds .nolb-run)")
    parser.add_argument("--allow-changed", action="append", default=[], metavar="KEY",
                        help="with --resume: accept a changed config key (fnmatch pattern, e.g. 'optim.*'); "
                             "by default a resume that changes results is refused")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nolb.config import apply_overrides, load_config
    from nolb.engine import config_of_run, train
    from nolb.engine.run_dir import check_resume_config

    overrides = list(args.overrides)
    if args.config and "=" in args.config:  # `nolb train --resume RUN key=value`: no CONFIG given
        overrides.insert(0, args.config)
        args.config = None
    if args.resume:
        if args.config:
            raise NolbError("with --resume the config comes from RUN_DIR/config.yaml; give only key=value overrides")
        if args.out and args.out != args.resume:
            raise NolbError("--out and --resume name different run directories")
        config = apply_overrides(config_of_run(args.resume), overrides)  # e.g. train.epochs=300 extends a run
        check_resume_config(args.resume, config, allow=args.allow_changed)
        run_dir = args.resume
    else:
        if not args.config:
            raise NolbError("nolb train needs a CONFIG (a YAML recipe or a packaged recipe name), or --resume RUN_DIR")
        if args.allow_changed:
            raise NolbError("--allow-changed only applies with --resume")
        config = load_config(args.config, overrides)
        run_dir = args.out
    result = train(config, run_dir=run_dir, resume=bool(args.resume), overwrite=args.overwrite, quiet=args.quiet,
                   command=["nolb", *sys.argv[1:]] if sys.argv else None)
    from nolb.progress import is_main_process

    if not is_main_process():  # under torchrun the table is printed once, by rank 0
        return 0
    if result.test is not None:
        from nolb.metrics import format_table

        print(format_table({f"{config.model.name} {config.loss.name} (test)": result.test}))
    print(f"run directory: {result.run_dir}")
    return 0
