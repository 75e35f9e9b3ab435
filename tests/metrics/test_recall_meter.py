"""RecallMeter: chunked and distributed counting equal the one-shot recall_report."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nolb.errors import NolbError
from nolb.metrics import RecallMeter, recall_report

NUM_CLASSES = 6


def make_data(seed: int = 0, num_samples: int = 257):
    generator = torch.Generator().manual_seed(seed)
    target = torch.cat([torch.arange(NUM_CLASSES), torch.randint(0, NUM_CLASSES, (num_samples - NUM_CLASSES,), generator=generator)])
    scores = torch.randn(num_samples, NUM_CLASSES, generator=generator)
    scores[torch.arange(num_samples), target] += 0.8 * (target.float() < 3)
    return scores, target


def test_chunked_updates_equal_the_whole():
    scores, target = make_data()
    counts = np.array([400, 150, 90, 30, 12, 4])
    whole = recall_report(target, scores, num_classes=NUM_CLASSES, train_counts=counts, bootstrap=30)
    meter = RecallMeter(NUM_CLASSES)
    for start in range(0, len(target), 50):
        chunk = slice(start, start + 50)
        if start % 100:  # alternate between scores and labels, torch and numpy
            meter.update(scores[chunk], target[chunk])
        else:
            meter.update(scores[chunk].argmax(1).numpy(), target[chunk].numpy())
    assert meter.num_samples == len(target)
    assert meter.report(train_counts=counts, bootstrap=30).to_dict() == whole.to_dict()


def test_confusion_is_a_naive_count():
    scores, target = make_data(1, 40)
    meter = RecallMeter(NUM_CLASSES)
    meter.update(scores, target)
    expected = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for t, p in zip(target.tolist(), scores.argmax(1).tolist()):
        expected[t, p] += 1
    np.testing.assert_array_equal(meter.confusion, expected)
    assert meter.confusion.dtype == np.int64
    meter.reset()
    assert meter.num_samples == 0


def test_all_reduce_without_process_group_is_a_no_op():
    scores, target = make_data(2, 30)
    meter = RecallMeter(NUM_CLASSES)
    meter.update(scores, target)
    before = meter.confusion
    np.testing.assert_array_equal(meter.all_reduce().confusion, before)


@pytest.mark.parametrize(
    "scores,target,message",
    [
        (torch.zeros(3, NUM_CLASSES + 1), torch.zeros(3, dtype=torch.long), "columns"),
        (torch.full((2, NUM_CLASSES), float("nan")), torch.zeros(2, dtype=torch.long), "NaN"),
        (torch.zeros(3, NUM_CLASSES), torch.zeros(2, dtype=torch.long), "3 predictions but 2 targets"),
        (torch.zeros(2, NUM_CLASSES), torch.tensor([0, NUM_CLASSES]), "target outside"),
        (torch.tensor([0, -1]), torch.tensor([0, 1]), "predicted label outside"),
    ],
)
def test_bad_updates_raise(scores, target, message):
    with pytest.raises(NolbError, match=message):
        RecallMeter(NUM_CLASSES).update(scores, target)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _distributed_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        scores, target = make_data()
        meter = RecallMeter(NUM_CLASSES)
        shard = slice(rank, None, world_size)  # disjoint shards, every sample exactly once
        meter.update(scores[shard], target[shard])
        local = meter.confusion
        meter.all_reduce()
        meter.all_reduce()  # a second call must not count twice
        np.save(f"{out_dir}/rank{rank}_local.npy", local)
        np.save(f"{out_dir}/rank{rank}_reduced.npy", meter.confusion)
        with open(f"{out_dir}/rank{rank}_report.json", "w") as handle:
            json.dump(meter.report().to_dict(), handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_two_gloo_processes_all_reduce_to_the_single_process_report(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_distributed_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    scores, target = make_data()
    single = recall_report(target, scores, num_classes=NUM_CLASSES)
    reduced = [np.load(tmp_path / f"rank{r}_reduced.npy") for r in range(2)]
    local = [np.load(tmp_path / f"rank{r}_local.npy") for r in range(2)]
    assert local[0].sum() + local[1].sum() == len(target) and not np.array_equal(local[0], local[1])
    for rank, matrix in enumerate(reduced):
        np.testing.assert_array_equal(matrix, local[0] + local[1])
        report = json.loads((tmp_path / f"rank{rank}_report.json").read_text())
        assert report == json.loads(json.dumps(single.to_dict()))
