"""End to end: a reduced `nolb demo`, then `nolb run --from-run`, `nolb retrain`, `nolb ensemble`."""

import csv
import json
import re

import numpy as np
import pytest
import torch

from nolb.cli import main
from nolb.retrain.final_model import ENSEMBLE_MARGIN

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


def test_demo_records_the_final_model_chosen_on_validation(demo_run):
    final = json.loads((demo_run / "final_model.json").read_text())
    assert final["candidate"] in ("base", "paper", "nolb", "ensemble")
    assert set(final["val"]) == {"base", "paper", "nolb", "ensemble"}
    # the rule, re-applied to the recorded scores: guard first, then (HM, AM); the ensemble only with a lead
    val, chosen = final["val"], final["val"][final["candidate"]]
    floor = re.search(r"accuracy >= ([0-9.]+)", final["rule"])
    feasible = {name for name, row in val.items() if floor is None or row["accuracy"] >= float(floor.group(1))}
    pool = feasible or set(val)
    assert final["candidate"] in pool
    best_single = max((val[name]["hm"], val[name]["am"]) for name in pool if name != "ensemble")
    if final["candidate"] == "ensemble":
        assert val["ensemble"]["hm"] - best_single[0] > ENSEMBLE_MARGIN
    else:
        assert (chosen["hm"], chosen["am"]) == best_single
        if "ensemble" in pool:
            ensemble = (val["ensemble"]["hm"], val["ensemble"]["am"])
            assert ensemble <= best_single or ensemble[0] - chosen["hm"] <= ENSEMBLE_MARGIN
    for path in final["files"].values():
        assert (demo_run / path).is_file()
    report = (demo_run / "report" / "report.md").read_text()
    assert f"final model: {final['candidate']}" in report and "budget:" in report


def test_train_retrain_ensemble_chain_with_defaults(tmp_path, capsys):
    run = tmp_path / "R"
    fast = ["retrain.views=1", "retrain.epochs=2", "retrain.select_lrs=[0.1]", "retrain.select_samplers=[instance]"]
    assert main(["train", "digits_lt", "train.epochs=2", "--out", str(run), "--quiet"]) == 0
    assert main(["retrain", str(run), *fast, "--quiet"]) == 0
    assert {p.name for p in (run / "retrain" / "heads").iterdir()} == {"paper.safetensors", "nolb.safetensors"}
    assert main(["ensemble", str(run), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "T1 " in printed and "T2 " in printed and str(run / "ensemble" / "ensemble.safetensors") in printed
    assert (run / "ensemble" / "ensemble.safetensors").is_file() and (run / "ensemble" / "report" / "report.md").is_file()
    assert (run / "final_model.json").is_file()
    assert main(["retrain", str(run), *fast, "retrain.lr=0.05", "retrain.select_on_val=false", "--overwrite",
                 "--quiet"]) == 0
    assert {p.name for p in (run / "retrain" / "heads").iterdir()} == {"paper.safetensors"}  # no stale nolb head
    record = json.loads((run / "retrain" / "retrain.json").read_text())
    assert record["heads"]["paper"]["settings"]["lr"] == 0.05 and record["features"]["reused"]["train"]
    capsys.readouterr()
    for argv, key in ((["retrain", str(run), "retrain.method=bogus"], "retrain.method"),
                      (["ensemble", str(run), "ensemble.t1=-1"], "ensemble.t1"),
                      (["retrain", str(run), "--model", "small_cnn"], "--model")):
        before = sorted(p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file())
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse refuses an unknown flag itself
            code = exit_.code
        assert code == 2
        err = capsys.readouterr().err
        assert key in err and len(err.strip().splitlines()) == 1
        assert sorted(p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()) == before  # no work done
    assert main(["retrain", str(run / "missing")]) == 2


def test_ensemble_of_another_head_file(demo_run, capsys):
    head = demo_run / "retrain" / "heads" / "tau_norm.safetensors"
    out = demo_run / "ens2"
    assert main(["ensemble", str(demo_run), f"ensemble.head={head}", "ensemble.temperature_grid=[0.5,1]",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "ensemble.safetensors").is_file() and "T1 " in capsys.readouterr().out


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
    model = build_model("small_cnn", 10, in_channels=1, width=16)
    weights = tmp_path / "plain.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, weights)
    out = tmp_path / "out"
    assert main(["retrain", str(weights), "digits_lt", "retrain.views=1", "retrain.epochs=1",
                 "retrain.select_on_val=false", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "retrain.json").read_text())
    assert record["heads"]["paper"]["settings"]["method"] == "gml" and (out / "heads" / "paper.safetensors").is_file()
    assert main(["retrain", str(weights)]) == 2
    assert "CONFIG" in capsys.readouterr().err
