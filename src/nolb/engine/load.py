"""Reopening a finished stage-1 run: ``load_trained(run_dir) -> (model, config, data)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from nolb.config import Config
from nolb.engine import components as build
from nolb.engine.run_dir import RunDir
from nolb.engine.trainer import config_of_run
from nolb.errors import NolbError
from nolb.models.checkpoint import load_state_into


def load_trained(run_dir: str | Path, which: str = "best", *, data: Any = None) -> tuple[nn.Module, Config, Any]:
    """The model of a run directory with its config and data.

    Args:
        run_dir: A folder written by :func:`nolb.engine.train`.
        which: ``"best"`` (validation-selected) or ``"last"``; ``best`` falls back to
            ``last`` when the run had no validation split.
        data: An ``LTData`` to reuse instead of rebuilding it from the config.

    Returns:
        ``(model, config, data)`` with the model in eval mode on the CPU.
    """
    if which not in ("best", "last"):
        raise NolbError(f"which must be 'best' or 'last', got {which!r}")
    config = config_of_run(run_dir)
    run = RunDir(run_dir, resume=True, writer=False)
    if which == "best" and not (run.checkpoint_dir / "best.json").is_file():
        which = "last"
    data = data if data is not None else build.build_data_from_config(config)
    model = build.build_model_from_config(config, data, initial_weights=False)
    _, weights, _ = run.load_checkpoint(which)
    load_state_into(model, weights, source=run.checkpoint_dir / f"{which}.safetensors")  # another architecture: one line
    return model.eval(), config, data
