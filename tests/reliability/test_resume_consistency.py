"""Issue 14, defect 4: a resume means the same run.  A resume whose config changes anything
that changes results is refused with the keys that differ, before any work and without
changing a file; ``--allow-changed KEY`` accepts named keys; extending ``train.epochs`` and
presentation keys (progress, plots, device) stay free."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, tree_hashes

TINY = ["train.epochs=1", "model.options={width: 8}"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from nolb.config import load_config
    from nolb.engine import train

    out = tmp_path_factory.mktemp("resume") / "run"
    train(load_config("digits_lt", TINY), run_dir=out, quiet=True)
    return out


@pytest.fixture
def run(tmp_path, tiny_run) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["train", "run"])
@pytest.mark.parametrize("override,key", [("data.imbalance_ratio=5", "data.imbalance_ratio"),
                                          ("loss.name=focal", "loss.name"),
                                          ("train.seed=3", "train.seed"),
                                          ("retrain.prior_strength=0.5", "retrain.prior_strength")])
def test_resume_with_a_changed_config_is_refused(run, run_cli, command, override, key):
    pytest.importorskip("nolb.retrain.pipeline")
    before = tree_hashes(run)
    rc, _, err = run_cli([command, "--resume", run, override, "--quiet"])
    assert_one_line_error(rc, err, key, "--allow-changed")
    assert tree_hashes(run) == before


@pytest.mark.timeout(90)
def test_allow_changed_accepts_the_named_keys(run, run_cli):
    rc, _, err = run_cli(["train", "--resume", run, "optim.lr=0.05", "--allow-changed", "optim.*", "--quiet"])
    assert rc == 0, err
    assert "lr: 0.05" in (run / "config.yaml").read_text()


@pytest.mark.timeout(90)
def test_extending_epochs_is_still_a_resume(run, run_cli):
    rc, _, err = run_cli(["train", "--resume", run, "train.epochs=2", "train.plot=false", "--quiet"])
    assert rc == 0, err


def test_config_differences_lists_only_results_changing_keys():
    from nolb.config import load_config
    from nolb.engine.run_dir import config_differences

    old = load_config("digits_lt").to_dict()
    new = load_config("digits_lt", ["data.imbalance_ratio=5", "train.epochs=7", "train.progress=false",
                                    "retrain.lr=0.5", "model.options={width: 4}"]).to_dict()
    assert config_differences(old, new) == ["data.imbalance_ratio", "model.options.width", "retrain.lr"]
    assert config_differences(old, new, allow=["retrain.*", "model.options.*"]) == ["data.imbalance_ratio"]
