"""Which small-CNN recipe buys the most validation quality per CPU-minute on Fashion-MNIST-LT?
(issue 16, item 5; decided on the VALIDATION split, the test split is not read.)

    python benchmarks/cpu_recipes.py --seeds 0 1 --out benchmarks/results/cpu_recipes.json
    python benchmarks/cpu_recipes.py --seeds 0 1 --variants w32-d2-e15 --out ...   # a subset (a stream)

Every variant is ``nolb train fashion_mnist_lt`` (IR 100, CE, the recipe's optimizer and cosine
schedule compressed to the variant's epochs) with one torch thread; the variants differ in the
small CNN's width (channels of its first stage), depth (conv layers per stage) and epochs.  For
each run: CPU-seconds of the training process (load-robust; wall time is recorded too) and the
best checkpoint's validation AM / HM / GM / lowest recall.  Runs already finished under
``--runs`` are read, not retrained, so two processes can share the work (``--variants``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import common  # noqa: E402

VARIANTS = {  # name -> (width, depth, epochs); the packaged recipe is w32-d1-e30
    "w32-d1-e15": (32, 1, 15), "w32-d1-e30": (32, 1, 30), "w32-d2-e15": (32, 2, 15), "w64-d1-e15": (64, 1, 15),
}
KEYS = ("am", "hm", "gm", "lowest", "accuracy")


def train(run: Path, width: int, depth: int, epochs: int, seed: int) -> dict:
    cmd = [sys.executable, "-m", "nolb", "train", "fashion_mnist_lt", f"train.seed={seed}", f"train.epochs={epochs}",
           f"model.options={{width: {width}, depth: {depth}}}", "--out", str(run), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timing = {"cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
              "wall_seconds": time.perf_counter() - start, "command": cmd[1:]}
    (run / "timing.json").write_text(json.dumps(timing))
    return timing


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "cpu_recipes")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rows = []
    for name in args.variants:
        width, depth, epochs = VARIANTS[name]
        for seed in args.seeds:
            run = args.runs / f"{name}_s{seed}"
            if not (run / "timing.json").is_file():
                train(run, width, depth, epochs, seed)
            timing = json.loads((run / "timing.json").read_text())
            val = json.loads((run / "metrics.json").read_text())["val"]
            rows.append({"variant": name, "width": width, "depth": depth, "epochs": epochs, "seed": seed, **timing,
                         "val": {k: val[k] for k in KEYS}})
            print(f"{name} s{seed}: {timing['cpu_seconds']:.0f} CPU-s, val " +
                  " ".join(f"{k} {100 * val[k]:.1f}" for k in KEYS), flush=True)
    means = {}
    for name in args.variants:
        mine = [r for r in rows if r["variant"] == name]
        means[name] = {"cpu_minutes": sum(r["cpu_seconds"] for r in mine) / len(mine) / 60,
                       **{k: sum(r["val"][k] for r in mine) / len(mine) for k in KEYS}, "seeds": len(mine)}
    print("| variant | CPU-min | val AM | val HM | val GM | val lowest |")
    for name, m in means.items():
        print(f"| {name} | {m['cpu_minutes']:.1f} | {100 * m['am']:.1f} | {100 * m['hm']:.1f} | {100 * m['gm']:.1f} | "
              f"{100 * m['lowest']:.1f} |")
    common.write_result(args.out, {"provenance": common.provenance(), "dataset": "fashion_mnist_lt IR 100, CE",
                                   "split": "validation", "rows": rows, "means": means})


if __name__ == "__main__":
    main()
