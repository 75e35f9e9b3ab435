"""The GPU recipe: 200-epoch ResNet-32 on CIFAR-10-LT IR 100 (CE and BSCE bases), GML re-training, ensemble.

Reads the carry file of ``benchmarks/gpu_carry.py`` (real CIFAR-10-LT training set, the
validation split and a balanced part of the test set), then for each base loss:

1. stage 1: ``nolb.engine.train`` with the package recipe ``cifar10_lt.yaml`` and ``loss.name=<loss>`` (+ its published overrides)
   (ResNet-32, 200 epochs, batch 128, SGD lr 0.1, wd 2e-4, warm-up 5, x0.1 at 160/180),
   the in-memory data path (the whole uint8 training set on the GPU, whole-batch
   augmentation there), bf16 autocast and channels_last; best checkpoint by validation HM;
2. stage 2: features of the frozen backbone cached (K augmented views) and the heads of
   ``nolb.retrain.run_stage2``: the paper-exact GML head, the validation-tuned "nolb" GML
   head, and cRT / LWS / tau-norm;
3. stage 3: the ensemble of the original and the nolb head, temperatures chosen on the
   validation split;
4. the test table (Acc, AM, HM, GM, Lowest, #zero, Many/Medium/Few with 95% bootstrap
   intervals) of every row, and timings.

Writes ``results.json`` and ``results.md`` (tables + timings) and the per-loss report
folders to ``--out`` (``$OUT`` on the device machine).  Also runs on the CPU with a tiny
epoch count (``--epochs 1 --max-steps-per-epoch 2``), which the test suite does.

    python benchmarks/gpu_cifar10_lt.py --out "$OUT"        # on the device machine
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import gpu_carry  # noqa: E402


def recipe_config(loss: str, args: argparse.Namespace, device: str):
    import nolb
    from nolb.config import load_config

    from nolb.recipes import PUBLISHED

    recipe = Path(nolb.__file__).resolve().parent / "configs" / "cifar10_lt.yaml"
    overrides = [*PUBLISHED[loss],
        f"train.epochs={args.epochs}", f"train.precision={args.precision}",
        f"train.channels_last={str(args.channels_last).lower()}", f"train.device={device}",
        f"train.seed={args.seed}", f"train.eval_every={args.eval_every}", "train.progress=false",
        f"train.deterministic={str(args.deterministic).lower()}", f"train.compile={str(args.compile).lower()}",
        "train.plot=false", f"retrain.views={args.views}", f"retrain.seed={args.seed}",
        f"retrain.baselines=[{','.join(args.baselines)}]" if args.baselines else "retrain.baselines=[]",
        "ensemble.select_temperatures=true",
    ]
    if args.epochs < 200:  # keep the schedule's shape: warm-up 5/200, steps at 160/200 and 180/200
        scale = args.epochs / 200
        overrides += [f"optim.warmup_epochs={max(0, round(5 * scale))}",
                      f"optim.milestones=[{max(1, round(160 * scale))},{max(1, round(180 * scale))}]"]
    if args.max_steps_per_epoch:
        overrides.append(f"train.max_steps_per_epoch={args.max_steps_per_epoch}")
    return load_config(recipe, overrides), overrides


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_one(loss: str, data, args: argparse.Namespace, device, out: Path, log) -> dict:
    import torch

    from nolb.engine import train
    from nolb.retrain import FeatureSource
    from nolb.retrain.report import reports_from_scores, write_report
    from nolb.retrain.scoring import head_logits
    from nolb.retrain.stages import PAPER_ROW, run_stage2, run_stage3

    config, overrides = recipe_config(loss, args, str(device))
    run_dir = args.work_dir / f"run_{loss}"
    times: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    result = train(config, run_dir=run_dir, overwrite=True, data=data, quiet=True,
                   command=["benchmarks/gpu_cifar10_lt.py", *overrides])
    sync(device)
    times["stage1_total"] = time.perf_counter() - t0
    times["stage1_train_loop"] = sum(r["seconds"] for r in result.history)
    first = result.history[0]["seconds"] if result.history else 0.0
    times["stage1_first_epoch"] = first
    times["stage1_train_loop_excl_first_epoch"] = times["stage1_train_loop"] - first
    ips = [r["images_per_second"] for r in result.history[1:]] or [r["images_per_second"] for r in result.history]
    log(f"[{loss}] stage 1: {times['stage1_total']:.1f} s ({times['stage1_train_loop']:.1f} s in the training loop), "
        f"best epoch {result.best_epoch}, val HM {result.best_val and result.best_val.get('hm')}")
    # back to the CPU first: FeatureSource moves the backbone (sharing the weights) to the
    # device and leaves the original head where it is; the heads work on CPU features, so
    # the head must stay on the CPU (as in run_pipeline, whose load_trained gives a CPU model)
    model = result.model.float().cpu().eval()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    source = FeatureSource(model, data, views=args.views, cache_dir=run_dir / "retrain" / "features",
                           batch_size=max(config.train.eval_batch_size, 1), device=device, seed=args.seed,
                           shift_bn=config.retrain.shift_bn)
    t0 = time.perf_counter()
    source.split("train")
    source.split("val")
    sync(device)
    times["stage2_features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    stage2 = run_stage2(source, config.retrain, run_dir / "retrain", log=lambda m: log(f"[{loss}] {m}"))
    times["stage2_heads"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    key = config.ensemble.head if config.ensemble.head in stage2.heads else "paper"
    stage3 = run_stage3(source, {k: h.head for k, h in stage2.heads.items()}, config.ensemble, stage2.criterion)
    ensemble, choice = stage3.ensemble, stage3.temperatures
    times["stage3"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = source.split("test")  # first and only read of the test split
    scores = {"base": head_logits(source.original_head, test.features),
              PAPER_ROW.get(config.retrain.method, config.retrain.method): head_logits(stage2.heads["paper"].head, test.features)}
    if "nolb" in stage2.heads:
        scores["nolb (val-tuned GML)"] = head_logits(stage2.heads["nolb"].head, test.features)
    with torch.no_grad():
        scores["ensemble"] = ensemble.forward_heads(test.features.float())
    for name, head in stage2.heads.items():
        if name not in ("paper", "nolb"):
            scores[PAPER_ROW[name]] = head_logits(head.head, test.features)
    rows = reports_from_scores(scores, test.labels, data.num_classes, train_counts=data.class_counts.numpy(),
                               class_names=list(data.class_names), bootstrap=1000, seed=0)
    notes = [f"ensemble: original head + {key} head, T1 {choice.t1 if choice else config.ensemble.t1}, "
             f"T2 {choice.t2 if choice else config.ensemble.t2} (chosen on validation)"]
    if "nolb" in stage2.heads:
        s = stage2.heads["nolb"].settings
        notes.append(f"nolb head: prior strength {s.prior_strength}, lr {s.lr}, sampler {s.sampler}, "
                     f"best epoch {stage2.heads['nolb'].best_epoch}")
    report = write_report(rows, run_dir / "report", title=f"CIFAR-10-LT IR 100: ResNet-32 + {loss} base "
                          f"({args.epochs} epochs, seed {args.seed})", notes=notes)
    times["report"] = time.perf_counter() - t0
    peak_cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "loss": loss, "overrides": overrides, "best_epoch": result.best_epoch, "best_val": result.best_val,
        "times_s": times, "images_per_second_median": sorted(ips)[len(ips) // 2] if ips else None,
        "table": report.table, "notes": notes,
        "rows": {name: {k: r.to_dict().get(k) for k in ("accuracy", "am", "hm", "gm", "lowest", "num_zero",
                                                          "many", "medium", "few", "intervals")}
                 for name, r in rows.items()},
        "peak_cuda_mib": peak_cuda,
    }


def markdown(summary: dict) -> str:
    lines = [f"# GPU recipe: CIFAR-10-LT IR 100, ResNet-32, {summary['settings']['epochs']} epochs", "",
             f"- device: {summary['device']}; commit {summary['provenance']['commit']}; seed {summary['settings']['seed']}",
             f"- precision {summary['settings']['precision']}, channels_last {summary['settings']['channels_last']}, "
             f"deterministic {summary['settings']['deterministic']}, compile {summary['settings']['compile']}",
             f"- data: {summary['data']}", f"- total wall time: {summary['total_seconds']:.1f} s",
             *([f"- not run (time budget): {', '.join(summary['skipped'])}"] if summary.get("skipped") else []), ""]
    for loss, r in summary["runs"].items():
        t = r["times_s"]
        lines += [f"## {loss} base", "", r["table"], "", *[f"- {n}" for n in r["notes"]],
                  f"- stage 1: {t['stage1_total']:.1f} s total, {t['stage1_train_loop']:.1f} s in the training loop "
                  f"({t['stage1_train_loop_excl_first_epoch']:.1f} s without the first epoch), median "
                  f"{r['images_per_second_median']:.0f} img/s; best epoch {r['best_epoch']}",
                  f"- stage 2: features {t['stage2_features']:.1f} s, heads {t['stage2_heads']:.1f} s; "
                  f"stage 3: {t['stage3']:.1f} s; test report {t['report']:.1f} s",
                  f"- peak GPU memory: {r['peak_cuda_mib']:.0f} MiB" if r["peak_cuda_mib"] else "- peak GPU memory: n/a (CPU)",
                  ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--carry", type=Path, default=gpu_carry.CARRY_DIR / gpu_carry.CARRY_FILE)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-out")))
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="run directories (default: a temporary folder; only the summary files go to --out, "
                             "since the device tool brings back at most 8 files, 2 folders deep)")
    parser.add_argument("--time-budget", type=float, default=0,
                        help="seconds: skip a further base loss when the last one suggests it would not fit (0: no limit)")
    parser.add_argument("--losses", default="ce,bsce")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (train.compile)")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic kernels (slower on the GPU; default: cuDNN autotuning)")
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--views", type=int, default=1)  # the retrain.views default (docs/PERFORMANCE.md)
    parser.add_argument("--baselines", type=lambda s: [b for b in s.split(",") if b], default=["crt", "lws", "tau_norm"])
    parser.add_argument("--max-steps-per-epoch", type=int, default=0, help="cap (CPU smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    import torch

    from nolb.engine.components import resolve_device
    from nolb.io import write_json, write_text

    started = time.perf_counter()
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {message}", flush=True)

    if args.work_dir is None:
        import tempfile

        args.work_dir = Path(tempfile.mkdtemp(prefix="nolb-gpu-runs-"))
    data = gpu_carry.load_carry(args.carry)
    log(f"data: {data.info.get('sizes')} from {args.carry}; device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}")
    runs, skipped = {}, []
    losses = [x.strip() for x in args.losses.split(",") if x.strip()]
    for i, loss in enumerate(losses):
        elapsed = time.perf_counter() - started
        last = max((r["times_s"]["all"] for r in runs.values()), default=0.0)
        if args.time_budget and runs and elapsed + 1.1 * last > args.time_budget:
            skipped = losses[i:]
            log(f"skipping {skipped}: {elapsed:.0f} s used, the last base took {last:.0f} s, budget {args.time_budget:.0f} s")
            break
        mark = time.perf_counter()
        runs[loss] = run_one(loss, data, args, device, out, log)
        runs[loss]["times_s"]["all"] = time.perf_counter() - mark
        summary_rows = {k: round(v["hm"], 4) for k, v in runs[loss]["rows"].items()}
        log(f"[{loss}] test HM: {summary_rows}")
        # written after every base, so a run stopped by a time limit still returns what it finished
        summary = {
            "benchmark": "gpu_cifar10_lt",
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "data": f"{data.info.get('source', data.info.get('name'))}; sizes {data.info.get('sizes')}; "
                    f"test: {data.info.get('test', 'synthetic')}",
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "runs": runs, "skipped": skipped, "total_seconds": time.perf_counter() - started,
            "provenance": common.provenance(),
        }
        write_json(out / "results.json", summary)
        write_text(out / "results.md", markdown(summary))
        report = args.work_dir / f"run_{loss}" / "report"
        for name, target in (("report.md", f"report_{loss}.md"), ("per_class_recall.png", f"per_class_recall_{loss}.png")):
            if (report / name).is_file():
                shutil.copyfile(report / name, out / target)
    if skipped:
        summary["skipped"] = skipped
        write_json(out / "results.json", summary)
        write_text(out / "results.md", markdown(summary))
    log(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
