"""``nolb run`` under torchrun (2 gloo processes on the CPU) equals one process on the same stage 1.

Stage 1 runs data-parallel; stages 2-3 must then extract each image once over both ranks,
write every output file once (rank 0), print the stage-2 lines and the table once, and give
the same features, chosen settings and report rows as ``nolb run --from-run`` in one
process on a copy of the same stage-1 run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
TINY = ["data.imbalance_ratio=10", "model.name=small_cnn", "model.options={width: 4}", "loss.name=ce",
        "train.batch_size=64", "train.eval_batch_size=128", "train.device=cpu", "train.progress=false",
        "train.plot=false", "retrain.epochs=4"]
STAGE_23 = ("retrain", "ensemble", "report", "final_model.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], log: Path, timeout: int = 280) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "NOLB_WRITE_LOG": str(log)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={free_port()}", str(HERE / "logged_nolb.py"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def stage23_writes(log: Path, run: Path) -> list[tuple[str, str]]:
    """(rank, path relative to run) of every write of a stage 2/3 output."""
    writes = []
    for line in log.read_text().splitlines():
        rank, path = line.split(" ", 1)
        relative = os.path.relpath(path, run)
        if relative.split(os.sep)[0] in STAGE_23:
            writes.append((rank, relative))
    return writes


@pytest.mark.timeout(400)
def test_two_ranks_equal_one_process(tmp_path, monkeypatch):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    run, log = tmp_path / "ddp", tmp_path / "writes.log"
    done = torchrun(["run", "digits_lt", *TINY, "train.epochs=2", "--out", str(run)], log)
    assert done.returncode == 0, done.stderr[-3000:]
    # Printed once: the stage-2 lines and the table.
    assert done.stdout.count("stage 2: features ready") == 1
    assert done.stdout.count("stage 2: nolb head chosen on val") == 1
    assert done.stdout.count("| Predictions |") == 1
    # Every stage 2/3 output (feature cache included) written exactly once, by rank 0.
    writes = stage23_writes(log, run)
    counts = Counter(path for _, path in writes)
    assert counts and max(counts.values()) == 1, [p for p, n in counts.items() if n > 1]
    assert {rank for rank, _ in writes} == {"0"}
    for split in ("train", "val", "test"):
        assert os.path.join("retrain", "features", f"{split}.manifest.json") in counts
    assert os.path.join("report", "metrics.json") in counts and "final_model.json" in counts

    # One process, same stage-1 run (copied without its stage 2/3 outputs).
    single = tmp_path / "single"
    shutil.copytree(run, single, ignore=lambda folder, names: [n for n in names if Path(folder) == run and n in STAGE_23])
    assert not (single / "retrain").exists()
    from nolb.cli import main

    monkeypatch.setenv("NOLB_WRITE_LOG", str(tmp_path / "single.log"))
    assert main(["run", "--from-run", str(single)]) == 0

    for split in ("train", "val", "test"):
        a = np.load(run / "retrain" / "features" / f"{split}.features.npy")
        b = np.load(single / "retrain" / "features" / f"{split}.features.npy")
        assert a.shape == b.shape and a.shape[0] > 0
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(np.load(run / "retrain" / "features" / f"{split}.labels.npy"),
                                      np.load(single / "retrain" / "features" / f"{split}.labels.npy"))
    chosen = [{key: head["settings"] for key, head in json.loads((d / "retrain" / "retrain.json").read_text())["heads"].items()}
              for d in (run, single)]
    assert chosen[0] == chosen[1]
    rows = [json.loads((d / "report" / "metrics.json").read_text()) for d in (run, single)]
    assert rows[0] == rows[1]
    finals = [json.loads((d / "final_model.json").read_text()) for d in (run, single)]
    assert finals[0]["candidate"] == finals[1]["candidate"] and finals[0]["val"] == finals[1]["val"]

    # Resumed under torchrun (stage 1 is finished): the cache is reused (no feature file written), same rows.
    log.unlink()
    again = torchrun(["run", "--resume", str(run)], log)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "'train': True, 'val': True, 'test': True" in again.stdout
    rewritten = [path for _, path in stage23_writes(log, run)]
    assert not [path for path in rewritten if "features" in path] and os.path.join("report", "metrics.json") in rewritten
    assert json.loads((run / "report" / "metrics.json").read_text()) == rows[1]


@pytest.mark.timeout(200)
def test_rank0_failure_ends_every_rank_and_prints_once(tmp_path):
    """Rank 0 fails in stage 3 (its report folder is a file): both ranks end, one error line."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    run = tmp_path / "base"
    from nolb.cli import main

    assert main(["train", "digits_lt", *TINY, "train.epochs=1", "--out", str(run), "--quiet"]) == 0
    (run / "report").write_text("in the way\n")
    done = torchrun(["run", "--from-run", str(run)], tmp_path / "writes.log", timeout=180)
    assert done.returncode != 0
    assert done.stdout.count("stage 2: features ready") == 1  # rank 0 got that far, alone
    assert done.stderr.count("nolb: error: ") == 1, done.stderr[-3000:]  # printed by rank 0 alone
    assert "a parent of this path is a file" in done.stderr
    assert "| Predictions |" not in done.stdout
    # Each failed rank left with rank 0's code (2: a path that cannot be written); none hangs.
    assert done.stderr.count("exitcode  : 2") + done.stderr.count("exitcode  : -15") == 2, done.stderr[-3000:]
