"""PaCo under DDP (two gloo processes on the CPU): every rank enqueues all ranks' keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .test_ddp import free_port


@pytest.mark.timeout(300)
def test_two_process_paco_enqueues_the_gathered_keys(tmp_path, tiny_overrides):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", "-m", "nolb", "train", "digits_lt", *tiny_overrides, "train.epochs=2",
               "loss.name=paco", "loss.options={queue_size: 96, projection_dim: 8, temperature: 0.1}",
               "--out", str(run), "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    from nolb.io import load_safetensors

    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = sum(r["steps"] for r in log)
    weights = load_safetensors(run / "checkpoints" / "last.safetensors")[0]
    # each step writes the global batch of 64 keys (32 per rank, all-gathered) into the queue
    assert int(weights["queue_ptr"]) == (steps * 64) % 96
    assert json.loads((run / "metrics.json").read_text())["world_size"] == 2
