"""The self-describing model file: description, checksum, final-model choice, model card."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from nolb.errors import NolbError


def test_description_says_how_to_use_the_model(ensemble_run):
    import nolb
    from nolb.data import build_data

    digits_run = ensemble_run  # the two-head file: both temperatures and the averaging space are described
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


def test_checksum_refuses_a_modified_file(ensemble_run, tmp_path):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from nolb.deploy import load_model

    source = ensemble_run / "model" / "model.safetensors"
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


def _declare(run, candidate, kind, files):
    (run / "final_model.json").write_text(json.dumps({"candidate": candidate, "kind": kind, "files": files}))


def test_final_model_choice_and_packaging_of_each_stage(digits_run, tmp_path, final_reference):
    """The declared candidate is packaged, whichever it is; without a declaration, the default order."""
    from nolb.data import build_data, build_loader
    from nolb.deploy import final_model_of, load_model, package_run

    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("features", "model"))
    declared = json.loads((run / "final_model.json").read_text())
    final = final_model_of(run)
    assert final.candidate == declared["candidate"] and final.choice["reason"] == declared["reason"]
    assert final.stage == {"base": "stage1", "head": "retrain", "ensemble": "ensemble"}[declared["kind"]]
    data = build_data("digits_lt", imbalance_ratio=20)
    x, _ = next(iter(build_loader(data.test, batch_size=50, train=False, preset=data.preset, mean=data.mean,
                                  std=data.std)))
    head_files = {"model": "checkpoints/best.json"}
    cases = [("nolb", "head", {**head_files, "head": "retrain/heads/nolb.safetensors"}, "retrain", "single"),
             ("paper", "head", {**head_files, "head": "retrain/heads/paper.safetensors"}, "retrain", "single"),
             ("base", "base", head_files, "stage1", "single"),
             ("ensemble", "ensemble", {"ensemble": "ensemble/ensemble.safetensors"}, "ensemble", "ensemble")]
    for candidate, kind, files, stage, single_or_ensemble in cases:
        _declare(run, candidate, kind, files)
        final = final_model_of(run)
        assert (final.stage, final.candidate) == (stage, candidate)
        if kind == "head":
            assert final.head_key == candidate and final.path == run / files["head"]
            label = "nolb (val-tuned GML)" if candidate == "nolb" else "GML (paper)"
            assert (run / "report" / "metrics.json", label) in final.report
        module, d = load_model(package_run(run))
        assert (d.stage, d.kind, d.provenance["final"]["candidate"]) == (stage, single_or_ensemble, candidate)
        with torch.no_grad():
            torch.testing.assert_close(module(x), final_reference(run, x), atol=2e-6, rtol=1e-5)
    # no declaration (stage 3 not run): ensemble file > nolb head > paper head > stage 1
    (run / "final_model.json").unlink()
    assert (final_model_of(run).stage, final_model_of(run).choice) == ("ensemble", None)
    shutil.rmtree(run / "ensemble")
    assert (final_model_of(run).stage, final_model_of(run).head_key) == ("retrain", "nolb")
    (run / "retrain" / "heads" / "nolb.safetensors").unlink()
    assert final_model_of(run).head_key == "paper"
    (run / "retrain" / "heads" / "paper.safetensors").unlink()
    assert final_model_of(run).stage == "stage1"
    _declare(run, "ensemble", "ensemble", {"ensemble": "nowhere.safetensors"})
    with pytest.raises(NolbError, match="nowhere.safetensors"):
        final_model_of(run)
    _declare(run, "nolb", "heads", {})
    with pytest.raises(NolbError, match="'kind' must be one of"):
        final_model_of(run)


def test_model_card_of_the_chosen_model(digits_run, final_report_row):
    """The card reports the declared candidate's test row, how stage 2 was chosen and why this model."""
    card = (digits_run / "model" / "MODEL_CARD.md").read_text()
    metrics = final_report_row(digits_run)
    final = json.loads((digits_run / "final_model.json").read_text())
    for section in ("## Data", "## Method", "## Test metrics", "## Worst five classes", "## Commands"):
        assert section in card
    assert "| 9 | 9 | 5 |" in card  # class 9 has 5 training images
    assert f"{100 * metrics['hm']:.2f} [{100 * metrics['intervals']['hm'][0]:.2f}" in card
    worst = sorted(range(10), key=lambda c: (metrics["per_class"][c], c))[:5]
    worst_rows = card.split("## Worst five classes")[1].split("## Commands")[0]
    assert [int(line.split("|")[1]) for line in worst_rows.splitlines() if line.startswith("| ") and
            line.split("|")[1].strip().isdigit()] == worst
    command = " ".join(json.loads((digits_run / "run.json").read_text())["command"])
    assert f"\n{command}\n" in card
    assert f"- final model: {final['candidate']} ({final['kind']}), chosen on the validation split" in card
    assert final["reason"] in card and final["rule"] in card
    if final["kind"] == "head":  # the stage-2 head: its budget and (tuned heads) rule, from retrain.json
        head = json.loads((digits_run / "retrain" / "retrain.json").read_text())["heads"][final["candidate"]]
        assert f"re-trained head {final['candidate']} (" in card and f"budget: {head['budget']})" in card
        how = (f"chosen on the validation split by: {head['selection_criterion']}" if final["candidate"] == "nolb"
               else "the paper's fixed recipe, not tuned")
        assert how in card


def test_model_card_of_the_ensemble_says_how_t1_t2_were_set(ensemble_run, final_report_row):
    card = (ensemble_run / "model" / "MODEL_CARD.md").read_text()
    ensemble = json.loads((ensemble_run / "ensemble" / "ensemble.json").read_text())
    metrics = final_report_row(ensemble_run)
    assert f"T1 {ensemble['t1']}, T2 {ensemble['t2']}" in card and "(chosen on validation)" in card
    assert f"{100 * metrics['hm']:.2f} [{100 * metrics['intervals']['hm'][0]:.2f}" in card
    assert "row 'ensemble'" in card


def test_a_run_directory_is_repackaged_when_its_final_model_changed(digits_run, tmp_path):
    import os

    from nolb.deploy import load_model
    from nolb.deploy.model_file import resolve_model_path

    run = tmp_path / "run"
    shutil.copytree(digits_run, run, ignore=shutil.ignore_patterns("features"))
    packaged = run / "model" / "model.safetensors"
    stamp = packaged.stat().st_mtime_ns
    assert resolve_model_path(run) == packaged and packaged.stat().st_mtime_ns == stamp  # up to date: reused
    # another candidate of the same stage (paper instead of nolb head, or nolb instead of another)
    declared = json.loads((run / "final_model.json").read_text())
    other = "paper" if declared["candidate"] != "paper" else "nolb"
    _declare(run, other, "head", {"model": "checkpoints/best.json", "head": f"retrain/heads/{other}.safetensors"})
    assert load_model(run)[1].provenance["final"]["candidate"] == other
    assert resolve_model_path(run) == packaged and packaged.stat().st_mtime_ns > stamp
    stamp = packaged.stat().st_mtime_ns
    resolve_model_path(run)
    assert packaged.stat().st_mtime_ns == stamp  # current again: reused
    head = run / "retrain" / "heads" / f"{other}.safetensors"
    future = packaged.stat().st_mtime + 60
    os.utime(head, (future, future))  # the head was re-trained after packaging
    resolve_model_path(run)
    assert packaged.stat().st_mtime_ns > stamp
