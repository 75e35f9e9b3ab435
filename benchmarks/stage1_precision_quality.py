"""Does bf16 autocast cost stage-1 quality? ``cifar10_lt_cpu`` (ResNet-32, bf16 + channels_last)
against the same run in fp32, judged on the VALIDATION split only (issue 16, item 1).

    python benchmarks/stage1_precision_quality.py --seeds 0 1 --losses ce bsce \
        --reuse-bf16 runs/quality --out benchmarks/results/stage1_precision_quality.json

Each arm is ``nolb train cifar10_lt_cpu`` at IR 100 with the quality study's compressed schedule
(``experiments/quality_study.py``: 6 epochs), one torch thread; the arms differ only in
``train.precision``.  ``--reuse-bf16 DIR`` takes the bf16 arm from the quality study's run
directories (``DIR/cifar10_lt_ir100_<loss>_s<seed>``: the same command plus stages 2-3, so the same
stage-1 model) instead of training it again.  Written: per run the best checkpoint's validation
AM / HM / GM / lowest recall, the epoch, images per second, and the paired differences.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))
sys.path.insert(0, str(REPO / "benchmarks"))
import common  # noqa: E402
from quality_study import epoch_overrides  # noqa: E402

KEYS = ("am", "hm", "gm", "lowest", "accuracy")


def train(run: Path, loss: str, seed: int, precision: str, epochs: int, data_root: Path) -> None:
    cmd = [sys.executable, "-m", "nolb", "train", "cifar10_lt_cpu", "data.imbalance_ratio=100", f"loss.name={loss}",
           f"train.seed={seed}", f"train.precision={precision}", f"data.root={data_root}", "model.name=resnet32",
           *epoch_overrides("cifar10_lt", epochs), "--out", str(run), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    subprocess.run(cmd, check=True, cwd=REPO, env=env)


def summary_of(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    speeds = [e["images_per_second"] for e in log if "images_per_second" in e]
    return {"run": str(run), "best_epoch": metrics["best_epoch"], "val": {k: metrics["val"][k] for k in KEYS},
            "images_per_second_median": sorted(speeds)[len(speeds) // 2] if speeds else None}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--losses", nargs="+", default=["ce", "bsce"])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "precision")
    p.add_argument("--reuse-bf16", type=Path, help="the quality study's run folder (runs/quality)")
    p.add_argument("--data-root", type=Path, default=REPO / "data" / "cifar10")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    common.cifar10_pickle_root(args.data_root)
    rows = []
    for loss in args.losses:
        for seed in args.seeds:
            arms = {}
            for precision in ("bf16", "fp32"):
                run = args.runs / f"cifar10_lt_ir100_{loss}_s{seed}_{precision}"
                reused = args.reuse_bf16 / f"cifar10_lt_ir100_{loss}_s{seed}" if args.reuse_bf16 else None
                if precision == "bf16" and reused is not None and (reused / "metrics.json").is_file():
                    run = reused
                elif not (run / "metrics.json").is_file():
                    train(run, loss, seed, precision, args.epochs, args.data_root)
                arms[precision] = summary_of(run)
            diff = {k: arms["bf16"]["val"][k] - arms["fp32"]["val"][k] for k in KEYS}
            rows.append({"loss": loss, "seed": seed, **arms, "bf16_minus_fp32": diff})
            print(f"{loss} s{seed}: " + "  ".join(f"{k} bf16 {100 * arms['bf16']['val'][k]:.1f} fp32 "
                                                  f"{100 * arms['fp32']['val'][k]:.1f}" for k in KEYS), flush=True)
    mean = {k: sum(r["bf16_minus_fp32"][k] for r in rows) / len(rows) for k in KEYS}
    print("mean bf16 - fp32 (points): " + ", ".join(f"{k} {100 * v:+.2f}" for k, v in mean.items()))
    common.write_result(args.out, {"provenance": common.provenance(), "epochs": args.epochs, "rows": rows,
                                   "mean_bf16_minus_fp32": mean, "split": "validation"})


if __name__ == "__main__":
    main()
