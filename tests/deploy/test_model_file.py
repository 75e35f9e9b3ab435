"""The self-describing model file: description, checksum, final-model choice, model card."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from nolb.errors import NolbError


def test_description_says_how_to_use_the_model(digits_run):
    import nolb
    from nolb.data import build_data

    module, d = nolb.load_model(digits_run / "model" / "model.safetensors")
    data = build_data("digits_lt", imbalance_ratio=20)
    assert not module.training and module.is_ensemble and d.kind == "ensemble" and d.stage == "ensemble"
    assert d.class_names == [str(c) for c in range(10)]
    assert d.train_counts == data.class_counts.tolist()
    p = d.preprocessing
    assert (p.color, p.channels, p.input_size, p.mean, p.std) == ("L", 1, 8, data.mean, data.std)
    assert p.resize is None and p.center_crop is None
    assert d.architecture["model"] == "small_cnn" and d.architecture["options"] == {"width": 16}
    ensemble = json.loads((digits_run / "ensemble" / "ensemble.json").read_text())
    assert d.heads["original"]["temperature"] == ensemble["t1"] and d.heads["new"]["temperature"] == ensemble["t2"]
    assert d.heads["space"] == ensemble["space"]
    run = json.loads((digits_run / "run.json").read_text())
    assert d.provenance["commit"] == run["git"]["commit"] and d.provenance["commands"] == [" ".join(run["command"])]
    x = torch.randn(4, 1, 8, 8)
    p_all, p1, p2 = module.all_probabilities(x)
    torch.testing.assert_close(p_all, (p1 + p2) / 2)
    torch.testing.assert_close(p_all.sum(1), torch.ones(4))


def test_checksum_refuses_a_modified_file(digits_run, tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from nolb.deploy import load_model

    source = digits_run / "model" / "model.safetensors"
    with safe_open(str(source), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(source))
    tensors["new_head.bias"] = tensors["new_head.bias"] + 1e-3
    save_file(tensors, str(tmp_path / "tampered.safetensors"), metadata=metadata)
    with pytest.raises(NolbError, match="checksum mismatch"):
        load_model(tmp_path / "tampered.safetensors")
    description = json.loads(metadata["description"])
    description["heads"]["new"]["temperature"] = 2.0  # a silent change of behaviour
    save_file(load_file(str(source)), str(tmp_path / "edited.safetensors"),
              metadata={**metadata, "description": json.dumps(description)})
    with pytest.raises(NolbError, match="checksum mismatch"):
        load_model(tmp_path / "edited.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(NolbError, match="not a nolb model file"):
        load_model(tmp_path / "other.safetensors")


def test_final_model_choice_and_packaging_of_each_stage(digits_run, tmp_path):
    from nolb.data import build_data, build_loader
    from nolb.deploy import final_model_of, load_model, package_run
    from nolb.engine import load_trained

    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("features", "model"))
    assert final_model_of(run).stage == "ensemble"
    data = build_data("digits_lt", imbalance_ratio=20)
    x, _ = next(iter(build_loader(data.test, batch_size=50, train=False, preset=data.preset, mean=data.mean,
                                  std=data.std)))
    # stage 2 only: the backbone with the val-chosen head as its classifier
    shutil.rmtree(run / "ensemble")
    final = final_model_of(run)
    assert (final.stage, final.head_key) == ("retrain", "nolb")
    module, d = load_model(package_run(run))
    assert d.kind == "single" and d.stage == "retrain"
    base, _, _ = load_trained(run)
    head = torch.nn.Linear(base.feature_dim, 10)
    from nolb.io import load_safetensors

    head.load_state_dict(load_safetensors(run / "retrain" / "heads" / "nolb.safetensors")[0])
    with torch.no_grad():
        torch.testing.assert_close(module(x), torch.softmax(head(base.forward_features(x)), 1))
    # a declared final model wins: the stage-1 model
    (run / "final_model.json").write_text(json.dumps({"candidate": "base", "kind": "base", "files": {"model": "checkpoints/best.json"}}))
    module, d = load_model(package_run(run))
    assert d.stage == "stage1"
    with torch.no_grad():
        torch.testing.assert_close(module(x), torch.softmax(base(x), 1))
    (run / "final_model.json").write_text(json.dumps({"candidate": "ensemble", "kind": "ensemble", "files": {"ensemble": "nowhere.safetensors"}}))
    with pytest.raises(NolbError, match="nowhere.safetensors"):
        final_model_of(run)


def test_model_card_lists_data_method_metrics_worst_classes_commands(digits_run):
    card = (digits_run / "model" / "MODEL_CARD.md").read_text()
    metrics = json.loads((digits_run / "report" / "metrics.json").read_text())["ensemble"]
    for section in ("## Data", "## Method", "## Test metrics", "## Worst five classes", "## Commands"):
        assert section in card
    assert "| 9 | 9 | 5 |" in card  # class 9 has 5 training images
    assert f"{100 * metrics['hm']:.2f} [{100 * metrics['intervals']['hm'][0]:.2f}" in card
    worst = sorted(range(10), key=lambda c: (metrics["per_class"][c], c))[:5]
    worst_rows = card.split("## Worst five classes")[1].split("## Commands")[0]
    assert [int(line.split("|")[1]) for line in worst_rows.splitlines() if line.startswith("| ") and
            line.split("|")[1].strip().isdigit()] == worst
    command = " ".join(json.loads((digits_run / "run.json").read_text())["command"])
    assert "chosen on the validation split" in card and f"\n{command}\n" in card


def test_a_run_directory_is_repackaged_when_its_final_model_changed(digits_run, tmp_path):
    import os

    from nolb.deploy import load_model
    from nolb.deploy.model_file import resolve_model_path

    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("features"))
    packaged = run / "model" / "model.safetensors"
    stamp = packaged.stat().st_mtime_ns
    assert resolve_model_path(run) == packaged and packaged.stat().st_mtime_ns == stamp  # up to date: reused
    shutil.rmtree(run / "ensemble")  # the final model is now the re-trained head
    assert load_model(run)[1].stage == "retrain"
    assert resolve_model_path(run) == packaged and packaged.stat().st_mtime_ns > stamp
    stamp = packaged.stat().st_mtime_ns
    resolve_model_path(run)
    assert packaged.stat().st_mtime_ns == stamp  # current again: reused
    head = run / "retrain" / "heads" / "nolb.safetensors"
    future = packaged.stat().st_mtime + 60
    os.utime(head, (future, future))  # the head was re-trained after packaging
    resolve_model_path(run)
    assert packaged.stat().st_mtime_ns > stamp
