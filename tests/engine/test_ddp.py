"""Two gloo processes on the CPU through torchrun: the run completes and every test image counts once."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_process_training(run, overrides: list[str]) -> None:
    """`torchrun --nproc_per_node=2 -m nolb train digits_lt ... --out run` on the CPU (gloo); skips
    where gloo is missing, fails with the end of stderr if the run does."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", "-m", "nolb", "train", "digits_lt", *overrides,
               "--out", str(run), "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.timeout(300)
def test_two_process_gloo_training(tmp_path, tiny_overrides):
    run = tmp_path / "ddp"
    two_process_training(run, [*tiny_overrides, "train.epochs=2"])
    info = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert info["world_size"] == 2 and metrics["world_size"] == 2
    # 500 test images, 50 per class: the all-reduced confusion matrix counts each exactly once.
    assert metrics["test_images"] == 500
    rows = list(csv.DictReader(open(run / "per_class.csv")))
    count_column = next(c for c in rows[0] if "count" in c.lower() and "test" in c.lower())
    assert [int(r[count_column]) for r in rows] == [50] * 10
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    # Each rank takes half of the global batch of 64 (32 images) from its half of the data.
    from nolb.data import build_data

    n_train = len(build_data("digits_lt", imbalance_ratio=10).train)
    assert log[0]["steps"] == log[1]["steps"] == (n_train // 2) // 32
