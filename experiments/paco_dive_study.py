"""PaCo and DiVE next to CE and BSCE (issue 18): base -> paper GML -> nolb head -> ensemble.

    OMP_NUM_THREADS=1 nice -n 10 python experiments/paco_dive_study.py run \
        --dataset fashion_mnist_lt --seeds 0 1 2 --epochs 4 --width 16
    OMP_NUM_THREADS=1 python experiments/paco_dive_study.py run --dataset cifar10_lt --seeds 0 1 2 \
        --epochs 6 --methods ce bsce dive paco --quality-results RESULTS_DIR --quality-runs RUNS_DIR
    python experiments/paco_dive_study.py report      # results/paco_dive/summary.json + docs/QUALITY.md

`run` trains, per seed, CE, BSCE, PaCo and DiVE (teacher: that seed's BSCE run) through
`python -m nolb run` into runs/paco_dive/ (git-ignored) and writes one JSON per run under
results/paco_dive/ (command, commit, seed, resolved config, the four rows with 95 %
bootstrap intervals over test images).  A run whose JSON exists is skipped.

CIFAR-10-LT (IR 100) reuses the quality study (experiments/quality_study.py): its CE and BSCE
runs are not repeated, their result JSONs (``--quality-results``, default results/quality)
become the CE/BSCE rows (the record names its source), and DiVE's teacher is that seed's
quality-study BSCE run directory (``--quality-runs``, default runs/quality), which DiVE only
reads.  PaCo and DiVE run under the same protocol: recipe cifar10_lt_cpu, the study's
``epoch_overrides`` (its schedule compressed to ``--epochs``) and its data root.  `report`
averages the rows over seeds (mean and the range over seeds), writes summary.json and
replaces the "## PaCo and DiVE" section at the end of docs/QUALITY.md.  Every selection
(checkpoint, nolb head, ensemble temperatures) is made on the validation split by nolb.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_study import DATA_ROOTS, PINS, epoch_overrides  # noqa: E402  (the quality study's protocol)

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "paco_dive"
RESULTS = REPO / "results" / "paco_dive"
QUALITY = REPO / "docs" / "QUALITY.md"
SECTION = "## PaCo and DiVE"
METHODS = ("ce", "bsce", "paco", "dive")
RECIPES = {
    "fashion_mnist_lt": {"ce": "fashion_mnist_lt", "bsce": "fashion_mnist_lt", "paco": "fashion_mnist_lt_paco",
                         "dive": "fashion_mnist_lt_dive"},
    "cifar10_lt": {"ce": "cifar10_lt_cpu", "bsce": "cifar10_lt_cpu", "paco": "cifar10_lt_cpu",
                   "dive": "cifar10_lt_cpu"},
}
CIFAR_EXTRA = {  # cifar10_lt_cpu is a CE recipe: PaCo's CIFAR-LT settings (cifar100_lt_paco.yaml), DiVE's defaults
    "paco": ["loss.name=paco", "loss.options={alpha: 0.01, temperature: 0.05, queue_size: 1024, projection_dim: 32}"],
    "dive": ["loss.name=dive"],
}
CIFAR_IR = 100  # the quality study's run names carry it: cifar10_lt_ir100_<loss>_s<seed>
ROWS = ("base", "GML (paper)", "nolb (val-tuned GML)", "ensemble")
METRICS = ("accuracy", "am", "hm", "gm", "lowest", "num_zero")


def run_dir(dataset: str, method: str, seed: int) -> Path:
    return RUNS / f"{dataset}_{method}_s{seed}"


def result_path(dataset: str, method: str, seed: int) -> Path:
    return RESULTS / f"{dataset}_{method}_s{seed}.json"


def quality_name(method: str, seed: int) -> str:
    """The quality study's name of its CIFAR-10-LT run (experiments/quality_study.py name_of)."""
    return f"cifar10_lt_ir{CIFAR_IR}_{method}_s{seed}"


def teacher_dir(dataset: str, seed: int, quality_runs: Path | None = None) -> Path:
    """DiVE's teacher: that seed's BSCE run (the quality study's on CIFAR-10-LT)."""
    if dataset == "cifar10_lt":
        return (quality_runs or REPO / "runs" / "quality") / quality_name("bsce", seed)
    return run_dir(dataset, "bsce", seed)


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def command(dataset: str, method: str, seed: int, epochs: int | None, width: int | None = None,
            quality_runs: Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "nolb", "run", RECIPES[dataset][method], f"train.seed={seed}", *PINS.get(dataset, [])]
    if dataset == "cifar10_lt":  # the quality study's protocol (quality_study.command) plus the loss
        cmd += [f"data.imbalance_ratio={CIFAR_IR}", *CIFAR_EXTRA.get(method, [f"loss.name={method}"]),
                f"data.root={DATA_ROOTS[dataset]}"]
    elif method in ("ce", "bsce"):
        cmd.append(f"loss.name={method}")
    if method == "dive":
        cmd.append(f"loss.options.teacher={_shown(teacher_dir(dataset, seed, quality_runs))}")
    if width is not None:
        cmd.append(f"model.options={{width: {width}}}")
    if dataset == "cifar10_lt":
        cmd += epoch_overrides(dataset, epochs)
    elif epochs is not None:
        cmd.append(f"train.epochs={epochs}")
    return cmd + ["--out", str(run_dir(dataset, method, seed).relative_to(REPO)), "--overwrite", "--quiet"]


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() + ("+dirty-src" if dirty.stdout.strip() else "")


def _row(report: dict) -> dict:
    row = {k: report.get(k) for k in (*METRICS, "many", "medium", "few", "group_sizes")}
    row["intervals"] = {k: report["intervals"][k] for k in ("am", "hm", "gm", "lowest") if k in report["intervals"]}
    return row


def selection_lines(d: Path) -> list[str]:
    """What the report says each head was (paper head settings, the validation-chosen nolb head, ensemble)."""
    text = (d / "report" / "report.md").read_text()
    return [line[2:] for line in text.splitlines() if line.startswith("- ")]


def quality_record(method: str, seed: int, quality_results: Path) -> dict | None:
    """The CE / BSCE row of CIFAR-10-LT: the quality study's run, in this study's record form."""
    source = quality_results / f"{quality_name(method, seed)}.json"
    if not source.is_file():
        return None
    q = json.loads(source.read_text())
    return {
        "command": " ".join(q["command"]), "commit": q["commit"][:7] + ("+dirty" if q.get("dirty") else ""),
        "dataset": "cifar10_lt", "method": method, "seed": seed, "seconds": q["seconds"], "config": q["config"],
        "rows": {name: _row(q["rows"][name]) for name in ROWS if name in q["rows"]},
        "selection": [f"{k}: {v}" for k, v in q.get("chosen_on_val", {}).items()],
        "source": f"quality study (experiments/quality_study.py, run {quality_name(method, seed)}, not rerun here): "
                  f"read from {_shown(source)}",
    }


def cmd_run(args: argparse.Namespace) -> None:
    from nolb.io import write_json

    RESULTS.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for method in args.methods:
            out = result_path(args.dataset, method, seed)
            if out.is_file():
                print(f"skip {out.name} (done)", flush=True)
                continue
            if args.dataset == "cifar10_lt" and method in ("ce", "bsce"):
                record = quality_record(method, seed, args.quality_results)
                if record is None:
                    print(f"skip {out.name}: no quality-study result {quality_name(method, seed)}.json "
                          f"under {args.quality_results}", flush=True)
                else:
                    write_json(out, record)
                    print(f"{out.name} <- quality study {quality_name(method, seed)}", flush=True)
                continue
            teacher = teacher_dir(args.dataset, seed, args.quality_runs)
            if method == "dive" and not (teacher / "checkpoints" / "last.safetensors").is_file():
                print(f"skip {out.name}: its BSCE teacher {teacher} has not finished", flush=True)
                continue
            cmd = command(args.dataset, method, seed, args.epochs, args.width, args.quality_runs)
            print(" ".join(cmd[1:]), flush=True)
            start = time.time()
            subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
            d = run_dir(args.dataset, method, seed)
            rows = json.loads((d / "report" / "metrics.json").read_text())
            record = {
                "command": "python " + " ".join(["-m", *cmd[2:]]),
                "commit": _commit(), "dataset": args.dataset, "method": method, "seed": seed,
                "seconds": round(time.time() - start, 1),
                "config": yaml.safe_load((d / "config.yaml").read_text()),
                "rows": {name: _row(rows[name]) for name in ROWS if name in rows},
                "selection": selection_lines(d),
            }
            if method == "dive":
                record["teacher"] = (f"{_shown(teacher)} (the quality study's BSCE run {quality_name('bsce', seed)}, "
                                     "read only)" if args.dataset == "cifar10_lt" else _shown(teacher))
            write_json(out, record)


def _fmt(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} [{100 * min(values):.1f}, {100 * max(values):.1f}]"


def _verdict(row: dict | None, base: dict | None, key: str = "hm") -> str:
    """gain / loss when the two 95% bootstrap intervals of ``key`` are disjoint, else tie."""
    if not row or not base:
        return "n/a"
    (lo, hi), (blo, bhi) = row["intervals"][key], base["intervals"][key]
    return "gain" if lo > bhi else "loss" if hi < blo else "tie"


def cmd_report(args: argparse.Namespace) -> None:
    from nolb.io import write_json, write_text

    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*_s*.json"))]
    summary: dict = {}
    lines = []
    table_lines: dict[str, list[str]] = {}
    for dataset in sorted({r["dataset"] for r in records}):
        start = len(lines)
        lines += [f"#### {dataset} (IR 100)", "",
                  "| base | row | seeds | AM | HM | GM | Lowest | #zero | one-seed 95% CI of HM (seed 0) |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for method in METHODS:
            runs = [r for r in records if r["dataset"] == dataset and r["method"] == method]
            if not runs:
                continue
            for row in ROWS:
                got = [r["rows"][row] for r in runs if row in r["rows"]]
                if not got:
                    continue
                entry = {m: [g[m] for g in got] for m in METRICS}
                entry["seeds"] = [r["seed"] for r in runs if row in r["rows"]]
                summary.setdefault(dataset, {}).setdefault(method, {})[row] = entry
                seed0 = next((r["rows"][row] for r in runs if r["seed"] == 0 and row in r["rows"]), None)
                ci = (f"[{100 * seed0['intervals']['hm'][0]:.1f}, {100 * seed0['intervals']['hm'][1]:.1f}]"
                      if seed0 else "")
                zeros = statistics.fmean(entry["num_zero"])
                lines.append(f"| {method} | {row} | {len(got)} | {_fmt(entry['am'])} | {_fmt(entry['hm'])} | "
                             f"{_fmt(entry['gm'])} | {_fmt(entry['lowest'])} | {zeros:.1f} | {ci} |")
        lines += ["", "HM against the base, per seed (seed: verdict; `gain`/`loss` only when the two 95% intervals "
                  "are disjoint, else `tie`):", "",
                  "| base | paper GML vs base | nolb head vs base | ensemble vs base |", "| --- | --- | --- | --- |"]
        for method in METHODS:
            runs = sorted((r for r in records if r["dataset"] == dataset and r["method"] == method),
                          key=lambda r: r["seed"])
            if runs:
                cells = [", ".join(f"{r['seed']}: {_verdict(r['rows'].get(row), r['rows'].get('base'))}" for r in runs)
                         for row in ROWS[1:]]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
        table_lines[dataset] = lines[start:]
    write_json(RESULTS / "summary.json", {"runs": len(records), "table": summary,
                                          "regenerate": "python experiments/paco_dive_study.py report"})
    table = "\n".join(lines)
    write_text(RESULTS / "table.md", table + "\n")
    notes = (REPO / "experiments" / "paco_dive_notes.md")
    body = table
    if notes.is_file():  # {{TABLE:<dataset>}}, {{SEEDS:<dataset>}}, {{MINUTES:<dataset>}} (mean minutes per seed)
        body = notes.read_text()
        for dataset in sorted({r["dataset"] for r in records}):
            runs = [r for r in records if r["dataset"] == dataset]
            seeds = sorted({r["seed"] for r in runs})
            per_seed = [sum(r["seconds"] for r in runs if r["seed"] == s) / 60 for s in seeds]
            part = "\n".join(table_lines[dataset])
            body = (body.replace(f"{{{{TABLE:{dataset}}}}}", part).replace(f"{{{{SEEDS:{dataset}}}}}", " ".join(map(str, seeds)))
                    .replace(f"{{{{MINUTES:{dataset}}}}}", f"{statistics.fmean(per_seed):.0f}"))
    text = QUALITY.read_text()
    head = text.split(SECTION)[0].rstrip() + "\n\n" if SECTION in text else text.rstrip() + "\n\n"
    write_text(QUALITY, head + SECTION + "\n\n" + body.strip() + "\n")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--dataset", choices=tuple(RECIPES), default="fashion_mnist_lt")
    run.add_argument("--seeds", type=int, nargs="+", default=[0])
    run.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    run.add_argument("--epochs", type=int, default=None)
    run.add_argument("--width", type=int, default=None, help="small_cnn width (Fashion-MNIST; default: the recipe's)")
    run.add_argument("--quality-results", type=Path, default=REPO / "results" / "quality",
                     help="CIFAR-10-LT: the quality study's result JSONs (the CE and BSCE rows)")
    run.add_argument("--quality-runs", type=Path, default=REPO / "runs" / "quality",
                     help="CIFAR-10-LT: the quality study's run dirs (DiVE's BSCE teachers, only read)")
    sub.add_parser("report")
    args = parser.parse_args()
    {"run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
