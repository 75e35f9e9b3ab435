"""Helpers shared by the benchmark scripts: real data, provenance, timing, peak memory.

Not part of the installed package: the scripts put ``benchmarks/`` on ``sys.path`` and
import this module by name.  Every result file carries ``provenance()`` (git commit,
dirty flag, machine, load average, library versions, command), so each number in
docs/RESULTS.md can be traced to the command, commit and machine that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

# On a shared, oversubscribed CPU, OpenMP threads that spin while waiting make torch 2-3x
# slower (measured here: a ResNet-32 step went from ~3 s to ~1.1 s wall with 2 threads).
# Every variant of every benchmark runs with the same setting; it must be set before torch
# is imported (benchmarks import this module first).  Override by exporting it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CIFAR10_SOURCE = SHARED_DATA / "cifar10"
RESNET32_WEIGHTS = SHARED_DATA / "weights" / "resnet32-d509ac18.th"


# ---------------------------------------------------------------------------------------------
# provenance


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def short_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    """Commit, machine and load: what a reader needs to judge a timing."""
    import torch

    from nolb.provenance import git_commit

    info = {
        "commit": short_commit(),
        "dirty": git_commit(REPO_ROOT).get("dirty"),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_end": list(os.getloadavg()),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
    }
    return info


# ---------------------------------------------------------------------------------------------
# memory and timing


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def summary(values: Sequence[float]) -> dict:
    """Median, min, max and count of repeated measurements."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values),
            "values": values}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_worker(script: Path, args: Sequence[str], timeout: float = 900) -> dict:
    """Run ``python script --worker-json ARGS`` in a fresh process; its last stdout line is JSON.

    A fresh process per measurement gives each variant its own peak RSS
    (``ru_maxrss`` only ever grows within a process) and no state left by another variant.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(script.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    out = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"worker {script.name} {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker {script.name} printed no JSON:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def write_result(path: Path | None, result: dict) -> None:
    if path is None:
        return
    from nolb.io import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------
# real data: CIFAR-10-LT through nolb.data


def cifar10_pickle_root(folder: Path | None = None, source: Path = CIFAR10_SOURCE) -> Path:
    """Write the shared CIFAR-10 npz chunks as the official ``cifar-10-batches-py`` layout.

    The same construction as ``tests/conftest.py::cifar10_root`` (training images in the
    fixed order of ``RandomState(0).permutation``, five batches of 10,000), so that
    ``nolb.data.build_data("cifar10_lt", root=...)`` (the real reader and Cao et al.'s
    LT subsample) gives the same CIFAR-10-LT as the test suite.  Reused when present.
    """
    root = Path(folder) if folder is not None else Path(tempfile.gettempdir()) / "nolb-bench-cifar10"
    target = root / "cifar-10-batches-py"
    if (target / "batches.meta").is_file():
        return root
    files = [source / f"train_{i}.npz" for i in range(4)] + [source / "test.npz"]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 chunk {missing[0]} not found (see ../shared/data/cifar10/README.md)")
    parts = [np.load(f) for f in files[:4]]
    x_train = np.concatenate([p["x"] for p in parts])
    y_train = np.concatenate([p["y"] for p in parts]).astype(np.int64)
    test = np.load(files[4])
    classes = [str(c) for c in test["classes"]]
    order = np.random.RandomState(0).permutation(len(y_train))
    x_train, y_train = x_train[order], y_train[order]
    from nolb.data import write_cifar10_batches

    try:
        write_cifar10_batches(root, x_train, y_train, test["x"], test["y"], classes)
    except ValueError:  # another process wrote it meanwhile: use its copy
        if not target.exists():
            raise
    return root


def cifar10_lt(imbalance_ratio: float = 100, root: Path | None = None):
    """CIFAR-10-LT (real shared images) as an ``LTData`` built by ``nolb.data.build_data``."""
    from nolb.data import build_data

    return build_data("cifar10_lt", root=str(cifar10_pickle_root(root)), imbalance_ratio=imbalance_ratio)


def load_resnet32_cifar10(num_classes: int = 10):
    """The shared third-party CIFAR-10 ResNet-32 (akamaster) loaded into nolb's resnet32."""
    from nolb.models import build_model

    return build_model("resnet32", num_classes, weights=str(RESNET32_WEIGHTS))
