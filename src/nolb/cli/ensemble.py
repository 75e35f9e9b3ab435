"""``nolb ensemble RUN_DIR [CONFIG] [key=value ...]``: stage 3 and the run's final model.

The keys are the ``ensemble`` section of the recipes.  The original head and a stage-2 head
(``ensemble.head``: ``nolb`` by default, another key of ``RUN_DIR/retrain/heads/`` or a
``.safetensors`` file) on one backbone pass, ``p = (softmax(z1/T1) + softmax(z2/T2)) / 2``,
(T1, T2) chosen on the validation split by default (``ensemble.select_temperatures=false``
uses ``ensemble.t1``/``t2``).  Writes ``ensemble.safetensors`` + ``.json``, a report, and
``RUN_DIR/final_model.json`` (the validated best of base, heads and ensemble).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nolb.cli._stage_config import add_stage_parser


def register(subparsers: argparse._SubParsersAction) -> None:
    add_stage_parser(subparsers, "ensemble", _run)


def _run(args: argparse.Namespace, config) -> int:
    from nolb.errors import NolbError
    from nolb.retrain.pipeline import ensemble_run

    if not config.ensemble.enabled:
        raise NolbError("config key 'ensemble.enabled' is false: nothing to build")
    head = config.ensemble.head
    if head.endswith(".safetensors") and not Path(head).is_file():
        raise NolbError(f"config key 'ensemble.head': {head}: no such head file")
    result = ensemble_run(args.target, config, out=args.out, overwrite=args.overwrite, device=args.device)
    if result is None:  # a rank > 0 under torchrun: rank 0 prints
        return 0
    stage3, report = result
    ensemble = stage3.ensemble
    how = "chosen on validation" if stage3.temperatures is not None else "fixed"
    print(report.table)
    print(f"ensemble: original head + {stage3.head_key} head, T1 {ensemble.t1}, T2 {ensemble.t2} ({how})")
    print(f"ensemble model: {stage3.ensemble_path} (+ .json)")
    print(f"final model: {stage3.final.candidate} ({stage3.final.reason})"
          + (f" -> {stage3.final_path}" if stage3.final_path else ""))
    print(f"report: {report.markdown}  plot: {report.plot}")
    from nolb.deploy import package_run  # the final model as one self-describing file + model card
    print(f"packaged final model: {package_run(args.target)} (+ MODEL_CARD.md)")
    return 0
