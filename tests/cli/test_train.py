"""``nolb train`` end to end on a tiny digits config, in-process through the CLI entry point."""

from __future__ import annotations

import json

import pytest

from nolb.cli import main

TINY = ["model.name=small_cnn", "model.options={width: 4}", "data.imbalance_ratio=10", "train.epochs=2",
        "train.batch_size=64", "train.device=cpu", "optim.warmup_epochs=0"]


def test_train_resume_and_refusals(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "digits_lt", *TINY, "--out", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| small_cnn ce (test) |" in out and str(run) in out
    assert json.loads((run / "metrics.json").read_text())["test_images"] == 500

    assert main(["train", "digits_lt", *TINY, "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nolb: error:") and "exists" in err and "\n" not in err

    # --resume takes the stored config; an override may extend the run.
    assert main(["train", "--resume", str(run), "train.epochs=3", "--quiet"]) == 0
    log = (run / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    assert "epochs: 3" in (run / "config.yaml").read_text()
    resumed = json.loads((run / "run.json").read_text())["resumed"]
    assert [(r["from_epoch"], r["config_changed"]) for r in resumed] == [(2, True)]

    assert main(["train", "digits_lt", *TINY, "--out", str(run), "--overwrite", "--quiet", "train.epochs=1"]) == 0
    assert len((run / "log.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("args, needle", [
    (["digits_lt", "train.epoch=2"], "'train.epochs'"),
    (["digits_lt", "optim.lr=-1"], "'optim.lr'"),
    (["digits_lt", "train.batch_size=0"], "'train.batch_size'"),
    (["no_such_recipe"], "not found"),
    ([], "needs a CONFIG"),
])
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path, capsys):
    assert main(["train", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nolb: error:") and needle in err and "\n" not in err
    assert not (tmp_path / "x").exists()
