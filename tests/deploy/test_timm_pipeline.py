"""A timm backbone end to end: stage 1 from a random-weights file, `nolb retrain`, `nolb ensemble`, predict."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from nolb.cli import main

timm = pytest.importorskip("timm")


def test_timm_model_through_retrain_ensemble_and_predict(tmp_path, digits_test_pngs, capsys, prepared_batch,
                                                          predictions_as_reported):
    weights = tmp_path / "resnet10t_random.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1).state_dict(), weights)
    run = tmp_path / "run"
    assert main(["train", "digits_lt", "model.name=timm/resnet10t", f"model.weights={weights}", "model.options={}",
                 "train.epochs=1", "--out", str(run), "--quiet"]) == 0
    assert main(["retrain", str(run), "--epochs", "2", "--views", "1"]) == 0
    head = run / "retrain" / "gml" / "head.safetensors"
    assert head.is_file() and (run / "retrain" / "gml" / "retrain.json").is_file()
    assert main(["ensemble", str(run), "--head", str(head), "--select-temperatures", "--grid", "0.5", "1"]) == 0
    capsys.readouterr()
    from nolb.deploy import load_model
    from nolb.models.timm_models import TimmModel

    module, description = load_model(run)
    assert description.kind == "ensemble" and description.architecture["model"] == "timm/resnet10t"
    assert isinstance(module.original_head, torch.nn.Linear)
    assert any(isinstance(m, TimmModel) for m in module.modules())
    # the packaged model reproduces the `nolb ensemble` report on the test split
    root, paths, labels = digits_test_pngs
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), str(root), "--csv", str(out)]) == 0
    with open(out, newline="") as handle:
        predicted = {row["path"]: int(row["index_1"]) for row in csv.DictReader(handle)}
    space = description.heads["space"]
    report = json.loads((run / "ensemble" / "report" / "metrics.json").read_text())[f"ensemble ({space})"]
    x = prepared_batch(paths, description)
    with torch.no_grad():
        fp32 = module(x).argmax(1)
    assert [predicted[str(p)] for p in paths] == fp32.tolist()  # the CSV is the fp32 model's top-1
    as_reported = predictions_as_reported(module, x)  # the report scores float16-cached features
    correct = [sum(1 for y, p in zip(labels, as_reported.tolist()) if y == c and p == y) for c in range(10)]
    assert correct == report["correct"]
    assert (fp32 != as_reported).float().mean() <= 0.01  # fp16 rounding flips near-ties only
    assert "T1" in (run / "model" / "MODEL_CARD.md").read_text()


def test_retrain_a_timm_checkpoint_file(tmp_path, capsys):
    """`nolb retrain FILE --model timm/<name>`: timm's own state dict, its classifier found and replaced."""
    weights = tmp_path / "timm_resnet10t.pth"
    torch.manual_seed(1)
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1).state_dict(), weights)
    out = tmp_path / "retrained"
    assert main(["retrain", str(weights), "--model", "timm/resnet10t", "--data", "digits_lt", "--epochs", "1",
                 "--views", "1", "--out", str(out)]) == 0
    record = json.loads((out / "retrain.json").read_text())
    assert record["architecture"]["model"] == "timm/resnet10t" and (out / "head.safetensors").is_file()
    assert "gml head" in capsys.readouterr().out
