"""A timm backbone end to end: stage 1 from a random-weights file, `nolb retrain`, `nolb ensemble`, predict."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from nolb.cli import main

timm = pytest.importorskip("timm")


def _as_reported_correct(module, description, paths, labels, prepared_batch, predictions_as_reported):
    """Per-class correct counts of the model as the reports score it, and its fp32 top-1."""
    x = prepared_batch(paths, description)
    with torch.no_grad():
        fp32 = module(x).argmax(1)
    as_reported = predictions_as_reported(module, x)  # the report scores float32-cached test features
    correct = [sum(1 for y, p in zip(labels, as_reported.tolist()) if y == c and p == y) for c in range(10)]
    return correct, fp32, as_reported


def test_timm_model_through_retrain_ensemble_and_predict(tmp_path, digits_test_pngs, capsys, prepared_batch,
                                                          predictions_as_reported):
    weights = tmp_path / "resnet10t_random.pth"
    torch.manual_seed(0)
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1).state_dict(), weights)
    run = tmp_path / "run"
    assert main(["train", "digits_lt", "model.name=timm/resnet10t", f"model.weights={weights}", "model.options={}",
                 "train.epochs=1", "--out", str(run), "--quiet"]) == 0
    assert main(["retrain", str(run), "retrain.epochs=2", "retrain.views=1", "--quiet"]) == 0
    for key in ("nolb", "paper"):
        assert (run / "retrain" / "heads" / f"{key}.safetensors").is_file()
    assert (run / "retrain" / "retrain.json").is_file() and (run / "retrain" / "report" / "metrics.json").is_file()
    assert main(["ensemble", str(run), "ensemble.temperature_grid=[0.5,1]", "retrain.views=1", "--quiet"]) == 0
    capsys.readouterr()
    from nolb.deploy import load_model
    from nolb.models.timm_models import TimmModel

    # the final model chosen on validation (whichever candidate) reproduces its row of the `nolb ensemble` report
    declared = json.loads((run / "final_model.json").read_text())
    module, description = load_model(run)
    assert description.provenance["final"]["candidate"] == declared["candidate"]
    assert description.architecture["model"] == "timm/resnet10t"
    assert any(isinstance(m, TimmModel) for m in module.modules())
    root, paths, labels = digits_test_pngs
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), str(root), "--csv", str(out)]) == 0
    with open(out, newline="") as handle:
        predicted = {row["path"]: int(row["index_1"]) for row in csv.DictReader(handle)}
    rows = json.loads((run / "ensemble" / "report" / "metrics.json").read_text())
    correct, fp32, as_reported = _as_reported_correct(module, description, paths, labels, prepared_batch,
                                                      predictions_as_reported)
    assert [predicted[str(p)] for p in paths] == fp32.tolist()  # the CSV is the fp32 model's top-1
    label = {"base": "base", "nolb": "nolb (val-tuned GML)", "paper": "GML (paper)", "ensemble": "ensemble"}
    assert correct == rows[label[declared["candidate"]]]["correct"]
    assert torch.equal(fp32, as_reported)
    # the two-head timm file, declared final: also its report row
    (run / "final_model.json").write_text(json.dumps(
        {"candidate": "ensemble", "kind": "ensemble", "files": {"ensemble": "ensemble/ensemble.safetensors"}}))
    module, description = load_model(run)
    assert description.kind == "ensemble" and isinstance(module.original_head, torch.nn.Linear)
    assert any(isinstance(m, TimmModel) for m in module.modules())
    correct, fp32, as_reported = _as_reported_correct(module, description, paths, labels, prepared_batch,
                                                      predictions_as_reported)
    assert correct == rows["ensemble"]["correct"] and (fp32 != as_reported).float().mean() <= 0.01
    assert "T1" in (run / "model" / "MODEL_CARD.md").read_text()


def test_retrain_a_timm_checkpoint_file(tmp_path, capsys):
    """`nolb retrain FILE CONFIG model.name=timm/<name>`: timm's own state dict, its classifier found and replaced."""
    weights = tmp_path / "timm_resnet10t.pth"
    torch.manual_seed(1)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=10, in_chans=1)
    torch.save(net.state_dict(), weights)
    out = tmp_path / "retrained"
    assert main(["retrain", str(weights), "digits_lt", "model.name=timm/resnet10t", "model.options={}",
                 "retrain.epochs=1", "retrain.views=1", "--out", str(out), "--quiet"]) == 0
    from nolb.io import load_safetensors

    assert (out / "retrain.json").is_file()
    for key in ("nolb", "paper"):
        head = load_safetensors(out / "heads" / f"{key}.safetensors")[0]
        assert head["weight"].shape == net.fc.weight.shape  # a new head in place of timm's `fc`
    printed = capsys.readouterr().out
    assert "GML (paper)" in printed and "nolb (val-tuned GML)" in printed
    rows = json.loads((out / "report" / "metrics.json").read_text())
    assert {"base", "GML (paper)", "nolb (val-tuned GML)"} <= set(rows)
