"""PaCo under DDP (two gloo processes on the CPU): every rank enqueues all ranks' keys."""

from __future__ import annotations

import json

import pytest

from .test_ddp import two_process_training


@pytest.mark.timeout(300)
def test_two_process_paco_enqueues_the_gathered_keys(tmp_path, tiny_overrides):
    run = tmp_path / "ddp"
    two_process_training(run, [*tiny_overrides, "train.epochs=2", "loss.name=paco",
                               "loss.options={queue_size: 96, projection_dim: 8, temperature: 0.1}"])
    from nolb.io import load_safetensors

    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = sum(r["steps"] for r in log)
    weights = load_safetensors(run / "checkpoints" / "last.safetensors")[0]
    # each step writes the global batch of 64 keys (32 per rank, all-gathered) into the queue
    assert int(weights["queue_ptr"]) == (steps * 64) % 96
    assert json.loads((run / "metrics.json").read_text())["world_size"] == 2
