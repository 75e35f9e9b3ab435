"""Issue 14, defect 9: a refusal changes nothing.  Values are checked before any work, a
command's outputs appear all together or not at all, and a resume leaves no temp files
anywhere in the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from .conftest import assert_one_line_error, tree_hashes

TINY = ["train.epochs=1", "model.options={width: 8}"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from nolb.config import load_config
    from nolb.engine import train

    out = tmp_path_factory.mktemp("refusals") / "run"
    train(load_config("digits_lt", TINY), run_dir=out, quiet=True)
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("override", ["optim.lr=.inf", "optim.lr=.nan", "optim.momentum=-.inf", "retrain.lr=.inf",
                                      "ensemble.t1=.nan", "loss.mixup_alpha=.inf", "data.imbalance_ratio=.inf"])
def test_non_finite_values_are_refused_before_the_run_directory_exists(tmp_path, run_cli, override):
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "digits_lt", *TINY, override, "--out", out, "--quiet"])
    assert_one_line_error(rc, err, override.split("=")[0])
    assert not out.exists()


@pytest.mark.timeout(60)
def test_failed_evaluate_replaces_no_output(tmp_path, run_cli, monkeypatch):
    """The plot fails after the JSON and CSV are computed: all three old outputs stay."""
    import nolb.cli.evaluate as evaluate
    from nolb.errors import NolbError

    pred = tmp_path / "p.npz"
    np.savez(pred, labels=np.repeat(np.arange(3), 4), logits=np.random.default_rng(0).standard_normal((12, 3)))
    outs = {name: tmp_path / "out" / name for name in ("r.json", "r.csv", "r.png")}
    for path in outs.values():
        path.parent.mkdir(exist_ok=True)
        path.write_text("old\n")
    before = tree_hashes(tmp_path)

    def broken_plot(*args, **kwargs):
        raise NolbError("plot failed")

    monkeypatch.setattr(evaluate, "plot_per_class_recall", broken_plot)
    rc, _, err = run_cli(["evaluate", pred, "--json", outs["r.json"], "--csv", outs["r.csv"], "--plot", outs["r.png"],
                          "--overwrite"])
    assert_one_line_error(rc, err, "plot failed")
    assert tree_hashes(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["r.csv", "r.json", "r.png"]


@pytest.mark.timeout(90)
def test_resume_removes_temp_files_in_every_stage_folder(tmp_path, run_cli, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    stale = [run / "retrain" / ".head.safetensors.k1ll3d.tmp", run / "ensemble" / ".ensemble.json.k1ll3d.tmp",
             run / "retrain" / "features" / ".train.npy.k1ll3d.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 64)
    rc, _, err = run_cli(["train", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert not [p for p in stale if p.exists()]


@pytest.mark.timeout(120)
def test_ensemble_bad_grid_changes_nothing(tmp_path, run_cli, tiny_run):
    pytest.importorskip("nolb.retrain.pipeline")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert run_cli(["retrain", run, "retrain.epochs=1", "retrain.views=1"])[0] == 0
    before = tree_hashes(run)
    rc, _, err = run_cli(["ensemble", run, "ensemble.select_temperatures=true", "ensemble.temperature_grid=[0, 1]"])
    assert_one_line_error(rc, err, "temperature_grid")
    assert tree_hashes(run) == before


@pytest.mark.timeout(120)
def test_retrain_bad_prior_strength_changes_nothing(tmp_path, run_cli, tiny_run):
    pytest.importorskip("nolb.retrain.pipeline")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = tree_hashes(run)
    rc, _, err = run_cli(["retrain", run, "retrain.prior_strength=nan"])
    assert_one_line_error(rc, err, "prior_strength")
    assert tree_hashes(run) == before
