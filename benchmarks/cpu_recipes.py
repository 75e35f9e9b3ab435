"""Which CPU recipe buys the most validation quality per CPU-minute?  (issue 16, items 1 and 5;
decided on the VALIDATION split, the test split is not read.)

    python benchmarks/cpu_recipes.py --seeds 0 1 --out benchmarks/results/cpu_recipes.json
    python benchmarks/cpu_recipes.py --recipe digits_lt --seeds 0 1 2 3 4 5 6 7 \
        --out benchmarks/results/cpu_recipes_digits.json
    python benchmarks/cpu_recipes.py --recipe cifar10_lt_cpu --seeds 0 1 --variants r20-e20 \
        --out ...            # a subset: two processes can share the work, one variant list each

Every variant is ``nolb train RECIPE`` with the recipe's own loss, data and optimizer, one torch
thread, and the overrides of the variant (``VARIANTS`` below: the small CNN's width and depth
or the CIFAR ResNet's depth, the epochs with the recipe's schedule compressed to them, the
autocast precision).  For each run: CPU-seconds of the training process (load-robust; wall time
is recorded too) and the best checkpoint's validation AM / HM / GM / lowest recall.  Runs already
finished under ``--runs`` are read, not retrained.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
sys.path.insert(0, str(REPO / "benchmarks"))
import common  # noqa: E402
from quality_study import cifar_cpu_schedule  # noqa: E402  (the study's schedule compression)


def small_cnn(width: int, depth: int, epochs: int, precision: str = "fp32") -> list[str]:
    return [f"model.options={{width: {width}, depth: {depth}}}", f"train.epochs={epochs}", f"train.precision={precision}"]


def cifar_resnet(name: str, epochs: int, precision: str = "bf16") -> list[str]:
    """cifar10_lt_cpu's schedule compressed to ``epochs`` as the quality study compresses it."""
    return [f"model.name={name}", f"train.epochs={epochs}", *cifar_cpu_schedule(epochs), f"train.precision={precision}"]


# recipe -> (what it trains on, {variant: overrides}); the first variant of each is the recipe as it
# was packaged when the comparison began.  Every variant names its precision (fp32 unless it says bf16),
# so that a recipe's later default (``fashion_mnist_lt`` now says ``auto``) does not change it.
VARIANTS = {
    "fashion_mnist_lt": ("Fashion-MNIST-LT IR 100, CE", {
        "w32-d1-e30": small_cnn(32, 1, 30), "w32-d1-e15": small_cnn(32, 1, 15),
        "w32-d2-e15": small_cnn(32, 2, 15), "w64-d1-e15": small_cnn(64, 1, 15),
        "w32-d2-e15-bf16": small_cnn(32, 2, 15, "bf16"),
        "w32-d2-e30-bf16": small_cnn(32, 2, 30, "bf16"),
        "w32-d2-e30": small_cnn(32, 2, 30)}),
    "digits_lt": ("Digits-LT IR 20, CE", {
        "w16-d1-e30": small_cnn(16, 1, 30), "w16-d1-e15": small_cnn(16, 1, 15), "w16-d1-e60": small_cnn(16, 1, 60),
        "w16-d1-e120": small_cnn(16, 1, 120), "w16-d2-e30": small_cnn(16, 2, 30), "w32-d1-e30": small_cnn(32, 1, 30),
        "w32-d2-e30": small_cnn(32, 2, 30), "w32-d1-e60": small_cnn(32, 1, 60), "w32-d1-e120": small_cnn(32, 1, 120),
        "w16-d1-e120-bf16": small_cnn(16, 1, 120, "bf16")}),
    "cifar10_lt_cpu": ("CIFAR-10-LT IR 100, CE", {
        "r32-e20": cifar_resnet("resnet32", 20), "r32-e10": cifar_resnet("resnet32", 10),
        "r20-e20": cifar_resnet("resnet20", 20), "r20-e30": cifar_resnet("resnet20", 30),
        "r20-e20-fp32": cifar_resnet("resnet20", 20, "fp32")}),
}
DATA_ROOTS = {"cifar10_lt_cpu": "data/cifar10"}  # experiments/make_cifar10_batches.py writes it
KEYS = ("am", "hm", "gm", "lowest", "accuracy")


def train(recipe: str, run: Path, overrides: list[str], seed: int) -> dict:
    root = [f"data.root={DATA_ROOTS[recipe]}"] if recipe in DATA_ROOTS else []
    cmd = [sys.executable, "-m", "nolb", "train", recipe, f"train.seed={seed}", *root, *overrides,
           "--out", str(run), "--overwrite", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timing = {"cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
              "wall_seconds": time.perf_counter() - start, "command": cmd[1:], "load_after": os.getloadavg()[0]}
    (run / "timing.json").write_text(json.dumps(timing))
    return timing


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", choices=sorted(VARIANTS), default="fashion_mnist_lt")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--variants", nargs="+", help="a subset of the recipe's variants (default: all)")
    p.add_argument("--runs", type=Path, help="where runs are kept (default runs/cpu_recipes/RECIPE)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides after each variant's")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    dataset, variants = VARIANTS[args.recipe]
    names = args.variants or list(variants)
    unknown = sorted(set(names) - set(variants))
    if unknown:
        p.error(f"--variants: {', '.join(unknown)} not among {', '.join(variants)} for {args.recipe}")
    runs = args.runs or REPO / "runs" / "cpu_recipes" / args.recipe
    rows = []
    for name in names:
        for seed in args.seeds:
            run = runs / f"{name}_s{seed}"
            if not (run / "timing.json").is_file():
                train(args.recipe, run, [*variants[name], *args.set], seed)
            timing = json.loads((run / "timing.json").read_text())
            val = json.loads((run / "metrics.json").read_text())["val"]
            rows.append({"variant": name, "overrides": [*variants[name], *args.set], "seed": seed, **timing,
                         "val": {k: val[k] for k in KEYS}})
            print(f"{name} s{seed}: {timing['cpu_seconds']:.0f} CPU-s, val " +
                  " ".join(f"{k} {100 * val[k]:.1f}" for k in KEYS), flush=True)
    means = {}
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        means[name] = {"cpu_minutes": statistics.mean(r["cpu_seconds"] for r in mine) / 60, "seeds": len(mine),
                       **{k: statistics.mean(r["val"][k] for r in mine) for k in KEYS},
                       **{f"{k}_sd": statistics.stdev(r["val"][k] for r in mine) if len(mine) > 1 else None
                          for k in ("am", "hm")}}
    print("| variant | CPU-s | val AM (sd) | val HM (sd) | val GM | val lowest |")
    for name, m in means.items():
        sd = {k: f" ({100 * m[f'{k}_sd']:.1f})" if m[f"{k}_sd"] is not None else "" for k in ("am", "hm")}
        print(f"| {name} | {60 * m['cpu_minutes']:.0f} | {100 * m['am']:.1f}{sd['am']} | {100 * m['hm']:.1f}{sd['hm']} | "
              f"{100 * m['gm']:.1f} | {100 * m['lowest']:.1f} |")
    common.write_result(args.out, {"provenance": common.provenance(), "recipe": args.recipe, "dataset": dataset,
                                   "split": "validation", "threads": 1, "rows": rows, "means": means})


if __name__ == "__main__":
    main()
