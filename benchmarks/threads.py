"""Which CPU thread settings train fastest here: intra-op threads, OMP_WAIT_POLICY, loader workers.

Each measurement is a fresh process (OpenMP reads ``OMP_WAIT_POLICY`` and the thread count
once, at start-up) that trains a few SGD steps of nolb's own models on in-memory batches and
reports images per second after a warm-up:

* ``small_cnn`` (width 32, 1x28x28, batch 128: the Fashion-MNIST-LT / digits recipes) and
  ``resnet32`` (3x32x32, batch 64: the CIFAR-LT recipes), with 1 or 2 intra-op threads and
  ``OMP_WAIT_POLICY`` unset (OpenMP's default: spin, then sleep) or ``PASSIVE`` (sleep at once);
* the per-image loader path (ImageFolder PNGs through PIL + torchvision v2, ``small_cnn`` on
  3x32x32) with 0, 1 or 2 DataLoader workers, 1 intra-op thread.

Every variant runs in two conditions, one after the other within each repetition: ``idle``
(whatever else the machine runs) and ``busy`` (this script adds one process that spins on
one core, as another user's job would).  Variants are interleaved, repeated ``--repeats``
times; the JSON keeps every value, medians, and each variant's median ratio to the current
default (2 threads, wait policy unset) measured in the same repetition and condition, plus
the load average before and after, so a reader can judge how loaded the machine was.

    python benchmarks/threads.py --repeats 3 --out benchmarks/results/threads.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = {"small_cnn": ((1, 28, 28), 128, 8), "resnet32": ((3, 32, 32), 64, 3)}  # shape, batch, timed steps
COMPUTE_VARIANTS = [(model, threads, wait) for model in MODELS for threads in (1, 2) for wait in ("default", "PASSIVE")]
LOADER_WORKERS = (0, 1, 2)


def worker(kind: str, model_name: str, threads: int, workers: int, image_dir: str | None) -> dict:
    """One measurement in this (fresh) process; returns images per second of the timed steps."""
    import torch

    torch.set_num_threads(threads)
    from nolb.models import build_model

    shape, batch, steps = MODELS[model_name]
    torch.manual_seed(0)
    if kind == "loader":
        shape, steps = (3, 32, 32), 6
        from nolb.data import build_loader
        from nolb.data.image_files import ImageFileDataset

        files = sorted(p.name for p in Path(image_dir).glob("*.png"))
        dataset = ImageFileDataset(image_dir, [(f, i % 10) for i, f in enumerate(files)], [str(c) for c in range(10)])
        loader = build_loader(dataset, batch_size=batch, train=True, preset="imagenet", image_size=32,
                              mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), class_counts=[1] * 10, num_workers=workers)
        batches = iter(loader)

        def next_batch():
            nonlocal batches
            try:
                return next(batches)
            except StopIteration:
                batches = iter(loader)
                return next(batches)
    else:
        fixed = (torch.randn(batch, *shape), torch.randint(0, 10, (batch,)))

        def next_batch():
            return fixed
    model = build_model(model_name, 10, in_channels=shape[0], **({"width": 32} if model_name == "small_cnn" else {}))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        x, y = next_batch()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    for _ in range(2):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"images_per_second": steps * batch / wall, "images_per_cpu_second": steps * batch / max(cpu, 1e-9),
            "seconds": wall}


def _measure(kind: str, model: str, threads: int, wait: str, workers: int, image_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "NOLB_THREADS")}
    env["PYTHONPATH"] = str(REPO_ROOT / "src")
    if wait != "default":
        env["OMP_WAIT_POLICY"] = wait
    args = [sys.executable, __file__, "--worker", kind, model, str(threads), str(workers), str(image_dir)]
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _spinner() -> subprocess.Popen:
    """A competing process that keeps one core busy."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _images(folder: Path, count: int = 128) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", nargs=5, metavar=("KIND", "MODEL", "THREADS", "WORKERS", "IMAGES"))
    args = parser.parse_args()
    if args.worker:
        kind, model, threads, workers, images = args.worker
        print(json.dumps(worker(kind, model, int(threads), int(workers), images)))
        return
    variants = [("compute", m, t, w, 0) for m, t, w in COMPUTE_VARIANTS]
    variants += [("loader", "small_cnn", 1, "PASSIVE", k) for k in LOADER_WORKERS]
    names = [f"{kind}:{m}:t{t}:{w}:w{k}" for kind, m, t, w, k in variants]
    load_before = list(os.getloadavg())
    values: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in ("idle", "busy")}
    ratios: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in ("idle", "busy")}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        image_dir = Path(tmp)
        _images(image_dir)
        for repeat in range(args.repeats):
            for condition in ("idle", "busy"):
                spinner = _spinner() if condition == "busy" else None
                try:
                    time.sleep(0.5 if spinner else 0)
                    row = {}
                    for name, (kind, m, t, w, k) in zip(names, variants):
                        row[name] = _measure(kind, m, t, w, k, image_dir)["images_per_second"]
                        values[condition][name].append(row[name])
                        loads.append(os.getloadavg()[0])
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                for name, (kind, m, t, w, k) in zip(names, variants):
                    base = f"compute:{m}:t2:default:w0" if kind == "compute" else "loader:small_cnn:t1:PASSIVE:w0"
                    ratios[condition][name].append(row[name] / row[base])
                print(f"repeat {repeat + 1} {condition}: " + ", ".join(f"{n} {v:.0f}" for n, v in row.items()), flush=True)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before, "load_average_after": list(os.getloadavg()),
        "load_1min_during": {"median": statistics.median(loads), "min": min(loads), "max": max(loads)},
        "unit": "images per second (wall), after 2 warm-up steps",
        "baseline": "compute variants: 2 threads, OMP_WAIT_POLICY unset; loader variants: 0 workers",
        "conditions": {
            c: {n: {"median": statistics.median(values[c][n]), "values": values[c][n],
                    "ratio_to_baseline_median": statistics.median(ratios[c][n]), "ratios": ratios[c][n]}
                for n in names}
            for c in values
        },
    }
    for c in ("idle", "busy"):
        print(f"{c}: " + ", ".join(f"{n} x{result['conditions'][c][n]['ratio_to_baseline_median']:.2f}" for n in names))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
