"""``nolb run CONFIG.yaml [key=value ...] [--out RUN_DIR] [--from-run RUN_DIR] [--overwrite]``.

The whole method: stage 1 (base model), stage 2 (paper-exact GML head, val-tuned nolb
head, baselines), stage 3 (ensemble and the validated final model, ``RUN/final_model.json``),
then the report table, per-class CSV and plot.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="stages 1-3 end to end, then the comparison report",
        description="Train the base model, re-train the classifier (GML, baselines), build the ensemble and "
                    "write the report. CONFIG is a YAML recipe or a packaged recipe name; key=value pairs "
                    "override it (retrain.baselines=[crt,lws,tau_norm] ensemble.select_temperatures=true).",
    )
    parser.add_argument("config", nargs="?", help="recipe YAML file or packaged recipe name")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    parser.add_argument("--out", metavar="RUN_DIR", help="stage-1 run directory (default runs/<data>-<model>-<loss>-seed<seed>)")
    parser.add_argument("--from-run", metavar="RUN_DIR", help="skip stage 1: start from this finished run")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted `nolb run` in RUN_DIR (stage 1 from its last checkpoint)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (cached features are kept)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch stage-1 lines")
    # i14 (issue 14): a resume that changes results is refused unless the keys are allowed
    parser.add_argument("--allow-changed", action="append", default=[], metavar="KEY",
                        help="with --resume: accept a changed config key (fnmatch pattern, e.g. 'retrain.*')")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nolb.config import apply_overrides, load_config
    from nolb.errors import NolbError

    overrides = list(args.overrides)
    if args.config and "=" in args.config:
        overrides.insert(0, args.config)
        args.config = None
    if args.resume:
        from nolb.engine import config_of_run

        if args.config or args.from_run:
            raise NolbError("with --resume the config comes from RUN_DIR/config.yaml; give only key=value overrides")
        if args.out and args.out != args.resume:
            raise NolbError("--out and --resume name different run directories")
        config = apply_overrides(config_of_run(args.resume), overrides)
        from nolb.engine.run_dir import check_resume_config  # i14 (issue 14): same run or refused

        check_resume_config(args.resume, config, allow=args.allow_changed)
        return run_and_print(config, run_dir=args.resume, resume=True, quiet=args.quiet)
    if args.from_run:  # stage 1 is done: only retrain.* / ensemble.* keys (or CONFIG's sections) apply
        from nolb.cli._stage_config import lock_finished_run, stage_config

        config = stage_config(args.from_run, args.config, overrides)
        lock_finished_run(args.from_run)
    elif args.config:
        config = load_config(args.config, overrides)
    else:
        raise NolbError("nolb run needs a CONFIG (YAML recipe or packaged recipe name) or --from-run RUN_DIR")
    return run_and_print(config, run_dir=args.out, from_run=args.from_run, overwrite=args.overwrite, quiet=args.quiet)


def run_and_print(config, *, run_dir=None, from_run=None, resume=False, overwrite=False, quiet=False) -> int:
    """Run the pipeline and print the table and where everything went (shared with ``nolb demo``)."""
    from nolb.retrain.pipeline import run_pipeline

    result = run_pipeline(config, run_dir=run_dir, from_run=from_run, resume=resume, overwrite=overwrite, quiet=quiet,
                          command=["nolb", *sys.argv[1:]] if sys.argv else None)
    if result is None:  # a rank > 0 under torchrun: rank 0 prints
        return 0
    print()
    print(result.report.markdown.read_text(encoding="utf-8"))
    print(f"run directory:   {result.run_dir}")
    print(f"report:          {result.report.markdown}")
    print(f"per-class CSV:   {result.report.per_class_csv}")
    print(f"per-class plot:  {result.report.plot}")
    if result.ensemble_path is not None:
        print(f"ensemble model:  {result.ensemble_path} (+ .json)")
    if result.stage3 is not None and result.stage3.final_path is not None:
        print(f"final model:     {result.stage3.final.candidate} ({result.stage3.final.reason}) -> "
              f"{result.stage3.final_path}")
    from nolb.deploy import package_run  # i15: the final model as one self-describing file + model card
    print(f"packaged model:  {package_run(result.run_dir)} (+ MODEL_CARD.md)")
    print(f"time: {result.seconds['total']:.1f} s")
    return 0
