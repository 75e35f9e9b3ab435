"""A tiny training config on the embedded digits data (335 training images, 8x8): seconds per run."""

from __future__ import annotations

import pytest

from nolb.config import load_config

TINY = [
    "data.name=digits_lt", "data.imbalance_ratio=10",
    "model.name=small_cnn", "model.options={width: 4}",
    "loss.name=ce",
    "optim.lr=0.1", "optim.warmup_epochs=1", "optim.milestones=[3]", "optim.weight_decay=5e-4",
    "train.epochs=3", "train.batch_size=64", "train.eval_batch_size=500", "train.device=cpu",
    "train.progress=false", "train.plot=false",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    """The tiny config as ``key=value`` strings (for command lines)."""
    return list(TINY)


@pytest.fixture
def tiny_config():
    """``tiny_config(*overrides)`` -> a validated Config for a seconds-long CPU run."""
    return lambda *overrides: load_config(None, [*TINY, *overrides])
