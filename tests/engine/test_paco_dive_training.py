"""PaCo and DiVE as ordinary stage-1 runs: exact resume (queue, momentum encoder), teacher checks."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from nolb.engine import train
from nolb.engine.load import load_trained
from nolb.errors import NolbError
from nolb.io import load_safetensors

PACO = ["loss.name=paco", "loss.options={alpha: 0.05, temperature: 0.1, queue_size: 48, projection_dim: 8}",
        "train.epochs=3", "optim.milestones=[2]"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def weights_of(run_dir, kind="last"):
    return load_safetensors(run_dir / "checkpoints" / f"{kind}.safetensors")[0]


def _assert_same_weights(a, b):
    for kind in ("last", "best"):
        full, split = weights_of(a, kind), weights_of(b, kind)
        assert full.keys() == split.keys()
        for key, value in full.items():
            assert torch.equal(split[key], value), (kind, key)


def test_paco_resume_is_exact_with_queue_and_momentum_encoder(tiny_config, tmp_path):
    config = tiny_config(*PACO)
    full = train(config, run_dir=tmp_path / "full", quiet=True)
    assert full.test is not None
    partial = train(config, run_dir=tmp_path / "split", quiet=True, stop_after_epoch=1)
    assert partial.epochs_completed == 1
    resumed = train(config, run_dir=tmp_path / "split", resume=True, quiet=True)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    _assert_same_weights(tmp_path / "full", tmp_path / "split")
    last = weights_of(tmp_path / "full")
    assert {"queue", "queue_labels", "queue_ptr"} <= last.keys()
    assert any(k.startswith("key_encoder.") for k in last)
    steps = sum(r["steps"] for r in full.history)
    assert int(last["queue_ptr"]) == (steps * 64) % 48  # every step enqueued its 64 keys
    # the momentum encoder moved, but is not the query encoder
    q, k = last["encoder.block1.0.weight"], last["key_encoder.block1.0.weight"]
    assert not torch.equal(q, k)


def test_paco_run_reopens_for_stage_2(tiny_config, tmp_path):
    train(tiny_config(*PACO, "train.epochs=1"), run_dir=tmp_path / "run", quiet=True)
    model, config, data = load_trained(tmp_path / "run")
    x = data.test.images[:5].float() / 255.0
    assert torch.equal(model(x), model.classifier(model.forward_features(x)))
    assert model.forward_features(x).shape == (5, model.feature_dim)


def test_dive_trains_from_a_bsce_teacher_and_resumes_exactly(tiny_config, tmp_path):
    train(tiny_config("loss.name=bsce", "train.epochs=2"), run_dir=tmp_path / "teacher", quiet=True)
    config = tiny_config("loss.name=dive", f"loss.options={{teacher: {tmp_path / 'teacher'}}}")
    full = train(config, run_dir=tmp_path / "full", quiet=True)
    assert full.test is not None
    train(config, run_dir=tmp_path / "split", quiet=True, stop_after_epoch=1)
    train(config, run_dir=tmp_path / "split", resume=True, quiet=True)
    _assert_same_weights(tmp_path / "full", tmp_path / "split")
    # the teacher run is left untouched and the student differs from a plain BSCE run
    plain = train(tiny_config("loss.name=bsce"), run_dir=tmp_path / "plain", quiet=True)
    assert plain.history[0]["train_loss"] != full.history[0]["train_loss"]


def test_dive_teacher_checks_are_one_line_errors(tiny_config, tmp_path):
    with pytest.raises(NolbError, match="loss.options.teacher=RUN_DIR"):
        train(tiny_config("loss.name=dive"), run_dir=tmp_path / "a", quiet=True)
    with pytest.raises(NolbError, match="not a nolb run directory"):
        train(tiny_config("loss.name=dive", f"loss.options={{teacher: {tmp_path / 'none'}}}"),
              run_dir=tmp_path / "b", quiet=True)
    train(tiny_config("loss.name=bsce", "train.epochs=1", "data.imbalance_ratio=5"), run_dir=tmp_path / "t",
          quiet=True)
    with pytest.raises(NolbError, match="data.imbalance_ratio") as info:
        train(tiny_config("loss.name=dive", f"loss.options={{teacher: {tmp_path / 't'}}}"), run_dir=tmp_path / "c",
              quiet=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "c" / "config.yaml").exists()


def test_mixup_is_refused(tiny_config, tmp_path):
    with pytest.raises(NolbError, match="mixup"):
        train(tiny_config(*PACO, "loss.mixup_alpha=0.2"), run_dir=tmp_path / "m", quiet=True)


@pytest.mark.parametrize("augment", [None, "autoaugment"])  # fast path, per-image path
def test_two_views_are_independent_draws_of_the_same_images(augment):
    from nolb.data import build_data, build_loader
    from nolb.data.loader import ImageBatchLoader, TensorBatchLoader
    from nolb.engine.special_steps import two_view_batches

    data = build_data("digits_lt", imbalance_ratio=10)
    loader = build_loader(data.train, batch_size=32, train=True, preset=data.preset, mean=data.mean, std=data.std,
                          augment=augment, class_counts=data.class_counts, seed=0)
    assert isinstance(loader, TensorBatchLoader if augment is None else ImageBatchLoader)
    loader.set_epoch(1)
    pairs, plain = list(islice(two_view_batches(loader), 3)), list(islice(loader, 3))
    assert len(pairs) == len(plain) == 3
    for (view1, view2, y), (x, label) in zip(pairs, plain):
        assert view1.shape == view2.shape == x.shape and torch.equal(y, label)
        assert not torch.equal(view1, view2)
    loader.set_epoch(1)
    again = list(islice(two_view_batches(loader), 3))
    if augment is None:  # the fast path repeats its draws for a given (seed, epoch): exact resume
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(pairs, again))
