"""The config of ``nolb retrain`` / ``nolb ensemble``: a run's own, with stage-2/3 keys changed.

``nolb retrain RUN [CONFIG] [key=value ...]``: with a run directory the run's config is the
start; a CONFIG recipe replaces its ``retrain`` and ``ensemble`` sections, and the
overrides may change only ``retrain.*`` and ``ensemble.*`` keys (stage 1 is finished, so
any other key could not apply and is refused).  With a checkpoint file, CONFIG is required
and names the model and the data.  The whole config is validated here, before any work.
"""

from __future__ import annotations

import argparse

import dataclasses
from pathlib import Path

from nolb.errors import NolbError

STAGE_SECTIONS = ("retrain", "ensemble")
# command -> (help, description, help of RUN_DIR)
TEXTS = {
    "retrain": ("stage 2: re-train the classifier (GML, BSCE, CE, cRT, LWS, tau-norm) on a frozen backbone",
                "Freeze the backbone of a trained run and train new linear classifiers. key=value pairs are retrain.* / "
                "ensemble.* config keys (retrain.lr=0.05 retrain.baselines=[crt,lws]).",
                "a nolb run directory (or a checkpoint file, then CONFIG is required)"),
    "ensemble": ("stage 3: ensemble the original and the re-trained classifier",
                 "Combine the original head and a stage-2 head of a run into one model and choose the run's final model. "
                 "key=value pairs are ensemble.* / retrain.* config keys (ensemble.head=paper ensemble.space=log).",
                 "a nolb run directory whose stage 2 is done"),
}


def stage_config(target: str | Path, recipe: str | None, overrides: list[str]):
    """The validated ``nolb.config.Config`` for stages 2-3 of ``target`` (see the module docstring)."""
    from nolb.config import apply_overrides, load_config

    overrides = list(overrides)
    if recipe and "=" in recipe:  # `nolb retrain RUN key=value`: no CONFIG given
        overrides.insert(0, recipe)
        recipe = None
    target = Path(target)
    if target.is_dir():
        from nolb.engine import config_of_run

        for item in overrides:
            section = item.partition("=")[0].split(".")[0]
            if section not in STAGE_SECTIONS:
                raise NolbError(f"override {item!r}: {target} is a finished run, so only retrain.* and ensemble.* "
                                "keys can apply (train a new run to change the others)")
        if not (target / "config.yaml").is_file():
            raise NolbError(f"{target}: not a nolb run directory (no config.yaml)")
        config = config_of_run(target)
        if recipe:
            stages = load_config(recipe)
            config = dataclasses.replace(config, retrain=stages.retrain, ensemble=stages.ensemble)
        return apply_overrides(config, overrides)
    if not target.is_file():
        raise NolbError(f"{target}: no such run directory or checkpoint file")
    if not recipe:
        raise NolbError(f"{target}: a checkpoint file needs a CONFIG naming its model and data "
                        "(nolb retrain FILE CONFIG [key=value ...])")
    return load_config(recipe, overrides)


def add_stage_parser(subparsers, name: str, func, *, target_optional: bool = False) -> argparse.ArgumentParser:
    """The stage command ``name``: TARGET [CONFIG] [key=value ...] and the four flags (--out,
    --overwrite, --device, --quiet); ``func(args, config)`` runs with the validated config."""
    help_text, description, target_help = TEXTS[name]
    parser = subparsers.add_parser(name, help=help_text, description=description)
    parser.add_argument("target", metavar="RUN_DIR", help=target_help, nargs="?" if target_optional else None)
    parser.add_argument("config", nargs="?", metavar="CONFIG",
                        help="recipe whose retrain/ensemble sections replace the run's (optional)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="retrain.* / ensemble.* overrides")
    parser.add_argument("--out", metavar="DIR", help="output folder (default inside RUN_DIR)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (cached features are kept)")
    parser.add_argument("--device", help="where the backbone runs (default: the run's train.device)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")

    def run(args) -> int:
        from nolb.progress import set_quiet

        config = stage_config(args.target, args.config, args.overrides)  # validated before any work
        lock_finished_run(args.target)
        set_quiet(args.quiet)
        return func(args, config)

    parser.set_defaults(func=run)
    return parser


def lock_finished_run(target: str | Path) -> None:
    """Hold the lock of the run directory ``target`` for the rest of the command (stages 2-3 write
    into it): a second writer is refused at once.  Only rank 0 under torchrun (it alone writes);
    a checkpoint file needs no lock."""
    import os

    from nolb.engine.run_dir import lock_run_dir

    path = Path(target)
    if path.is_dir() and (path / "config.yaml").is_file() and os.environ.get("RANK", "0") == "0":
        lock_run_dir(path)
