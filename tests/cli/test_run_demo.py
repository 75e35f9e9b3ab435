"""End to end: a reduced `nolb demo`, then `nolb run --from-run`, `nolb retrain`, `nolb ensemble`."""

import csv
import json

import numpy as np
import pytest
import torch

from nolb.cli import main

pytest.importorskip("nolb.engine")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    code = main(["demo", "--fast", "--out", str(out), "--set", "train.epochs=2"])
    assert code == 0
    return out


def test_demo_writes_the_report_plot_csv_and_ensemble(demo_run, capsys):
    report = (demo_run / "report" / "report.md").read_text()
    for row in ("| base |", "| GML (paper) |", "| nolb (val-tuned GML) |", "| ensemble |", "| cRT |", "| LWS |",
                "| tau-norm |"):
        assert row in report
    assert (demo_run / "report" / "per_class_recall.png").stat().st_size > 1000
    with open(demo_run / "report" / "per_class.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and "recall[ensemble]" in rows[0]
    metrics = json.loads((demo_run / "report" / "metrics.json").read_text())
    for name, row in metrics.items():  # the CSV and the summary agree
        assert np.mean([float(r[f"recall[{name}]"]) for r in rows]) == pytest.approx(row["am"], abs=1e-6)


def test_saved_ensemble_predicts_what_the_report_says(demo_run):
    from nolb.data import build_data, build_loader
    from nolb.metrics import recall_report
    from nolb.retrain.ensemble_io import load_ensemble

    ensemble = load_ensemble(demo_run / "ensemble" / "ensemble.safetensors")
    data = build_data("digits_lt", imbalance_ratio=20)
    loader = build_loader(data.test, batch_size=500, train=False, preset=data.preset, mean=data.mean, std=data.std)
    with torch.no_grad():
        scores = torch.cat([ensemble(x) for x, _ in loader])
        labels = torch.cat([y for _, y in loader])
    report = recall_report(labels.numpy(), scores.numpy(), num_classes=10)
    expected = json.loads((demo_run / "report" / "metrics.json").read_text())["ensemble"]
    np.testing.assert_allclose(report.per_class, expected["per_class"], atol=1e-9)


def test_rerun_from_the_run_reuses_cached_features_and_refuses_silent_overwrite(demo_run, capsys):
    assert main(["run", "--from-run", str(demo_run), "retrain.epochs=1", "retrain.select_lrs=[0.1]",
                 "retrain.select_prior_strengths=[0.0]", "retrain.select_samplers=[instance]"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["run", "--from-run", str(demo_run), "--overwrite", "retrain.epochs=1", "retrain.select_lrs=[0.1]",
                 "retrain.select_prior_strengths=[0.0]", "retrain.select_samplers=[instance]"]) == 0
    record = json.loads((demo_run / "retrain" / "retrain.json").read_text())
    assert record["features"]["reused"] == {"train": True, "val": True}


def test_retrain_and_ensemble_commands_on_the_run(demo_run, capsys):
    assert main(["retrain", str(demo_run), "--method", "tau_norm"]) == 0
    assert (demo_run / "retrain" / "tau_norm" / "head.safetensors").is_file()
    assert main(["ensemble", str(demo_run), "--head", str(demo_run / "retrain" / "tau_norm" / "head.safetensors"),
                 "--select-temperatures", "--grid", "0.5", "1", "--out", str(demo_run / "ens2")]) == 0
    printed = capsys.readouterr().out
    assert "ensemble (prob)" in printed and "ensemble (log)" in printed
    assert main(["retrain", str(demo_run / "missing")]) == 2


@pytest.mark.parametrize("override,key", [("retrain.method=svm", "retrain.method"),
                                          ("retrain.select_prior_strengths=[2.0]", "retrain.select_prior_strengths"),
                                          ("ensemble.space=median", "ensemble.space")])
def test_bad_stage_settings_fail_before_training(tmp_path, capsys, override, key):
    assert main(["demo", "--out", str(tmp_path / "never"), "--set", override]) == 2
    assert key in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_retrain_a_plain_pytorch_checkpoint(tmp_path, capsys):
    from nolb.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", 10, in_channels=1)
    weights = tmp_path / "plain.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, weights)
    out = tmp_path / "out"
    assert main(["retrain", "--weights", str(weights), "--model", "small_cnn", "--data", "digits_lt",
                 "--views", "1", "--epochs", "1", "--out", str(out)]) == 0
    record = json.loads((out / "retrain.json").read_text())
    assert record["settings"]["method"] == "gml" and (out / "head.safetensors").is_file()
    assert main(["retrain", "--weights", str(weights), "--data", "digits_lt"]) == 2
    assert "--model" in capsys.readouterr().err
