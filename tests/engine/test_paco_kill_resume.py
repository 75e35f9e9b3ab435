"""`nolb train` with loss.name=paco, SIGKILLed after its first checkpoint and resumed with --resume,
ends with the same weights (queue, momentum encoder included) as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from nolb.io import load_safetensors

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = ["model.options={width: 4}", "train.epochs=4", "optim.lr=0.1", "train.eval_every=1",
             "loss.name=paco", "loss.options={alpha: 0.05, temperature: 0.1, queue_size: 96, projection_dim: 8}"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


def _train(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nolb", "train", *args, "--quiet"], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _epoch(run: Path) -> int:
    try:
        return int(json.loads((run / "checkpoints" / "last.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def test_sigkill_after_an_epoch_then_resume_is_identical(tmp_path):
    full = _train("digits_lt", *OVERRIDES, "--out", str(tmp_path / "full"), cwd=tmp_path)
    assert full.wait(timeout=240) == 0, full.stderr.read()
    run = tmp_path / "run"
    child = _train("digits_lt", *OVERRIDES, "--out", str(run), cwd=tmp_path)
    deadline = time.time() + 120
    while child.poll() is None and _epoch(run) < 1 and time.time() < deadline:
        time.sleep(0.01)
    killed = child.poll() is None
    child.send_signal(signal.SIGKILL) if killed else None
    child.wait(timeout=60)
    assert killed, "the run finished before it could be killed"
    assert not (run / "metrics.json").exists()
    resumed = _train("--resume", str(run), cwd=tmp_path)
    assert resumed.wait(timeout=240) == 0, resumed.stderr.read()
    for kind in ("last", "best"):
        mine = load_safetensors(run / "checkpoints" / f"{kind}.safetensors")[0]
        ref = load_safetensors(tmp_path / "full" / "checkpoints" / f"{kind}.safetensors")[0]
        assert mine.keys() == ref.keys() and "queue" in ref
        for key in ref:
            assert torch.equal(mine[key], ref[key]), (kind, key)
    assert json.loads((run / "metrics.json").read_text())["test"] == \
        json.loads((tmp_path / "full" / "metrics.json").read_text())["test"]
