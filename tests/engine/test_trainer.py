"""Stage-1 training on tiny CPU runs: learning, run directory, determinism, exact resume, NaN stop."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
import torch
import yaml

from nolb.config import config_from_dict
from nolb.engine import load_trained, train
from nolb.engine import components
from nolb.errors import NolbError
from nolb.io import load_safetensors


def weights_of(run_dir, kind="last"):
    return load_safetensors(run_dir / "checkpoints" / f"{kind}.safetensors")[0]


def metrics_sources_ok(run):
    return json.loads((run / "metrics.json").read_text())["split_sources"] == \
        json.loads((run / "splits.json").read_text())["sources"]


def test_loss_decreases_and_run_directory_is_complete(tiny_config, tmp_path, monkeypatch):
    config = tiny_config("train.epochs=6", "optim.milestones=[5]", "train.plot=true", "train.tensorboard=true")
    evaluated = []
    real_eval_loader = components.eval_loader
    monkeypatch.setattr(components, "eval_loader",
                        lambda cfg, data, dataset, **kw: evaluated.append(dataset) or real_eval_loader(cfg, data, dataset, **kw))
    result = train(config, run_dir=tmp_path / "run", quiet=True, command=["nolb", "train", "tiny"])
    # TensorBoard is optional: events when installed, a note (and no failure) otherwise.
    has_tensorboard = importlib.util.find_spec("tensorboard") is not None
    assert (tmp_path / "run" / "tensorboard").is_dir() == has_tensorboard
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]
    run = tmp_path / "run"
    for name in ("config.yaml", "run.json", "log.jsonl", "metrics.json", "per_class.csv",
                 "checkpoints/last.safetensors", "checkpoints/last.json", "checkpoints/last.optim.safetensors",
                 "checkpoints/best.safetensors", "checkpoints/best.json", "per_class_recall.png"):
        assert (run / name).is_file(), name
    assert config_from_dict(yaml.safe_load((run / "config.yaml").read_text())) == config
    info = json.loads((run / "run.json").read_text())
    assert info["seed"] == 0 and info["world_size"] == 1 and info["command"] == ["nolb", "train", "tiny"]
    assert {"commit", "dirty"} <= set(info["git"]) and "torch" in info["environment"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4, 5, 6] and all("val" in r for r in log)
    # Validation groups classes by TRAINING counts (100..10 here: no Many, some Few), not by
    # the 20 validation images every class has (that would put every class in Medium).
    assert log[-1]["val"]["many"] is None and log[-1]["val"]["few"] is not None
    splits = json.loads((run / "splits.json").read_text())
    assert len(splits["train"]) == 403 and len(splits["val"]) == 200 and len(splits["test"]) == 500
    assert not set(splits["train"]) & set(splits["val"]) and not set(splits["val"]) & set(splits["test"])
    assert set(splits["sources"]) == {"train", "val", "test"} and metrics_sources_ok(run)
    state = json.loads((run / "checkpoints/last.json").read_text())
    assert state["epoch"] == 6 and {"optimizer", "scheduler", "scaler", "rng", "sampler_epoch"} <= set(state)
    # The test split is evaluated exactly once, at the end; model selection used validation.
    assert len(evaluated) == 1 and len(evaluated[0]) == 500
    metrics = json.loads((run / "metrics.json").read_text())
    best_val = max(r["val"]["hm"] for r in log)
    assert metrics["val"]["hm"] == pytest.approx(best_val) and metrics["best_epoch"] == result.best_epoch
    rows = list(csv.DictReader(open(run / "per_class.csv")))
    assert len(rows) == 10
    assert metrics["test_images"] == 500
    assert metrics["test"]["am"] == pytest.approx(result.test.am)
    # load_trained gives the selected (best) model back.
    model, loaded_config, data = load_trained(run)
    assert loaded_config == config
    for key, value in weights_of(run, "best").items():
        assert torch.equal(model.state_dict()[key], value)


def test_same_seed_same_config_gives_identical_runs(tiny_config, tmp_path):
    config = tiny_config("train.epochs=2", "loss.mixup_alpha=0.4")
    a = train(config, run_dir=tmp_path / "a", quiet=True)
    b = train(config, run_dir=tmp_path / "b", quiet=True)
    assert json.loads((tmp_path / "a/metrics.json").read_text())["test"] == json.loads((tmp_path / "b/metrics.json").read_text())["test"]
    for key, value in weights_of(tmp_path / "a").items():
        assert torch.equal(weights_of(tmp_path / "b")[key], value), key
    c = train(tiny_config("train.epochs=2", "loss.mixup_alpha=0.4", "train.seed=1"), run_dir=tmp_path / "c", quiet=True)
    assert not torch.equal(weights_of(tmp_path / "c")["classifier.weight"], weights_of(tmp_path / "a")["classifier.weight"])
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"] != c.history[0]["train_loss"]


def test_resume_continues_exactly(tiny_config, tmp_path):
    """3 epochs straight == 1 epoch, stop, resume for 2 more (LDAM-DRW + mixup + warm-up + step)."""
    config = tiny_config("train.epochs=3", "model.head=cosine", "loss.name=ldam_drw", "loss.options={drw_epoch: 2}",
                         "loss.mixup_alpha=0.4", "optim.milestones=[2]")
    train(config, run_dir=tmp_path / "full", quiet=True)
    partial = train(config, run_dir=tmp_path / "split", quiet=True, stop_after_epoch=1)
    assert partial.epochs_completed == 1 and partial.test is None
    assert not (tmp_path / "split/metrics.json").exists()
    with pytest.raises(NolbError, match="exists"):
        train(config, run_dir=tmp_path / "split", quiet=True)
    resumed = train(config, run_dir=tmp_path / "split", resume=True, quiet=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for kind in ("last", "best"):
        full, split = weights_of(tmp_path / "full", kind), weights_of(tmp_path / "split", kind)
        for key, value in full.items():
            assert torch.equal(split[key], value), (kind, key)
    full_log = (tmp_path / "full/log.jsonl").read_text().splitlines()
    split_log = (tmp_path / "split/log.jsonl").read_text().splitlines()
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k not in ("seconds", "images_per_second")}
    assert [strip(x) for x in full_log] == [strip(x) for x in split_log]


class _NaNAfter(torch.nn.Module):
    """Cross-entropy that turns NaN from its ``calls``-th call on (a diverging run)."""

    def __init__(self, calls):
        super().__init__()
        self.calls, self.seen = calls, 0

    def forward(self, logits, target):
        self.seen += 1
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        return loss * float("nan") if self.seen >= self.calls else loss


def test_non_finite_loss_stops_with_epoch_and_step(tiny_config, tmp_path, monkeypatch):
    from nolb.data import build_data

    config = tiny_config("train.epochs=3")
    steps_per_epoch = len(build_data("digits_lt", imbalance_ratio=10).train) // 64  # training drops the last batch
    monkeypatch.setattr(components, "build_loss_from_config", lambda cfg, data: _NaNAfter(steps_per_epoch + 2))
    with pytest.raises(NolbError, match=r"non-finite loss nan at step 2 of epoch 2.*last good checkpoint") as err:
        train(config, run_dir=tmp_path / "run", quiet=True)
    assert "\n" not in str(err.value)
    state = json.loads((tmp_path / "run/checkpoints/last.json").read_text())
    assert state["epoch"] == 1
    assert all(torch.isfinite(v.float()).all() for v in weights_of(tmp_path / "run").values())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_channels_last_and_class_balanced_sampler_run(tiny_config, tmp_path, precision):
    config = tiny_config("train.epochs=1", f"train.precision={precision}", "train.channels_last=true",
                         "data.sampler=class_balanced", "loss.name=bsce", "optim.nesterov=true",
                         "optim.schedule=cosine", "train.select_metric=am")
    result = train(config, run_dir=tmp_path / "run", quiet=True)
    assert result.test is not None and sum(result.test.test_counts) == 500
    scaler = json.loads((tmp_path / "run/checkpoints/last.json").read_text())["scaler"]
    assert bool(scaler) == (precision == "fp16")  # the GradScaler only runs for fp16
    assert all(torch.isfinite(v.float()).all() for v in weights_of(tmp_path / "run").values())
