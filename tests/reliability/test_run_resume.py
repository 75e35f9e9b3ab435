"""`nolb run --resume`: an end-to-end run interrupted in stage 1 or stage 2 continues to the
same report as an uninterrupted run (fp32 CPU, same seed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nolb.cli import main

pytest.importorskip("nolb.retrain.pipeline")

OVERRIDES = ["train.epochs=3", "model.options={width: 8}", "retrain.epochs=2", "retrain.views=1",
             "retrain.select_lrs=[0.1]", "retrain.select_prior_strengths=[0.0]",
             "retrain.select_samplers=[instance]", "retrain.baselines=[]"]


class _Interrupted(BaseException):
    """Stands for a SIGKILL at one precise moment."""


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _metrics(run: Path) -> dict:
    return json.loads((run / "report" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("run_resume") / "reference"
        assert main(["run", "digits_lt", *OVERRIDES, "--out", str(run), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.mark.timeout(120)
def test_run_interrupted_in_stage1_resumes_to_the_same_report(tmp_path, uninterrupted, capsys):
    from nolb.config import load_config
    from nolb.engine import train

    run = tmp_path / "run"
    train(load_config("digits_lt", OVERRIDES), run_dir=run, quiet=True, stop_after_epoch=1)
    assert not (run / "report").exists()
    assert main(["run", "--resume", str(run), "--quiet"]) == 0
    assert _metrics(run) == _metrics(uninterrupted)
    assert "report:" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_run_interrupted_in_stage2_resumes_to_the_same_report(tmp_path, uninterrupted, monkeypatch):
    import nolb.retrain.pipeline as pipeline

    real = pipeline.run_stage3

    def interrupted(*args, **kwargs):
        raise _Interrupted()

    run = tmp_path / "run"
    monkeypatch.setattr(pipeline, "run_stage3", interrupted)
    with pytest.raises(_Interrupted):
        main(["run", "digits_lt", *OVERRIDES, "--out", str(run), "--quiet"])
    monkeypatch.setattr(pipeline, "run_stage3", real)
    assert (run / "checkpoints").is_dir() and not (run / "report").exists()
    assert main(["run", "--resume", str(run), "--quiet"]) == 0
    assert _metrics(run) == _metrics(uninterrupted)


def test_run_resume_refuses_a_config_argument(tmp_path, capsys):
    assert main(["run", "digits_lt", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]
