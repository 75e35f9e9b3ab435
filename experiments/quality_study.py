"""Quality study under the honest-evaluation protocol (issue 12): one JSON per run, one doc section.

    python experiments/quality_study.py all                  # the default plan, then the report
    python experiments/quality_study.py run --dataset fashion_mnist_lt --imbalance-ratio 100 \\
        --losses ce bsce --seeds 0 --epochs 6
    python experiments/quality_study.py report               # docs/QUALITY.md, between the study markers

Each (dataset, IR, base loss, seed) is one ``nolb run`` (run directory under runs/quality/,
git-ignored) and one ``results/quality/<dataset>_ir<IR>_<loss>_s<seed>.json`` holding the
command, commit, seed, resolved config, the split sources (which images trained, selected
and are reported: ``splits.json`` of the run), which data chose what, and every report row's
Acc / AM / HM / GM / Lowest with 95% bootstrap intervals over test images.  ``run`` skips a
run whose JSON exists (``--force`` redoes it); ``report`` rewrites only the part of
docs/QUALITY.md between ``<!-- study:begin -->`` and ``<!-- study:end -->``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "quality"
RESULTS = REPO / "results" / "quality"
DOC = REPO / "docs" / "QUALITY.md"
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"

RECIPES = {"fashion_mnist_lt": "fashion_mnist_lt", "cifar10_lt": "cifar10_lt_cpu"}
DATA_ROOTS = {"cifar10_lt": REPO / "data" / "cifar10"}  # written by experiments/make_cifar10_batches.py
COMMON = ["retrain.baselines=[crt,lws,tau_norm]"]
# The model the committed runs used: fashion_mnist_lt.yaml moved to two conv layers per stage after the study
# (docs/PERFORMANCE.md, "Small CPU recipes"), so the study pins the one-layer model to stay reproducible.
PINS = {  # the stage-1 model and precision the committed runs used (the recipes have changed since: issue 16)
    "fashion_mnist_lt": ["model.options={width: 32, depth: 1}", "train.precision=fp32"],
    "cifar10_lt": ["model.name=resnet32", "train.precision=bf16"],
}
# The plan `all` runs (docs/QUALITY.md says which of it was run; `all` skips runs whose JSON exists,
# `all --force` redoes every one, e.g. on newer code).  Epochs: what two shared CPU cores allow for 24 runs in
# about two hours (the recipes' own: 30 and 20); each recipe's schedule is compressed to them (cosine /
# warm-up + steps at 80 % and 90 %), so every run ends its schedule.
PLAN = [
    {"dataset": d, "imbalance_ratio": ir, "losses": ["ce", "bsce"], "seeds": [0, 1, 2], "epochs": e}
    for d, e in (("fashion_mnist_lt", 15), ("cifar10_lt", 6)) for ir in (100, 10)
]
ROW_KEYS = ("accuracy", "am", "hm", "gm", "lowest", "num_zero", "many", "medium", "few")
# Which data chose what in `nolb run` (stage 1 engine/trainer.py, stage 2/3 nolb.retrain).
ROLES = {
    "stage-1 checkpoint (train.select_metric)": "val",
    "GML (paper) head": "nothing (paper settings, untuned)",
    "nolb head (tau, lr, sampler, epoch; retrain.select_criterion and guard)": "val",
    "cRT / LWS (lr, epoch), tau-norm (tau)": "val",
    "ensemble temperatures": "val",
    "reported rows": "test",
    "selection-rule defaults (criterion, grids, guard)": (
        "re-decided on Digits-LT (experiments/rule_development.py, results/rules/), a dataset this study "
        "does not report; first chosen in the issue-6 study on these test sets (history in docs/QUALITY.md)"),
}


def name_of(dataset: str, ir: float, loss: str, seed: int) -> str:
    return f"{dataset}_ir{ir:g}_{loss}_s{seed}"


def cifar_cpu_schedule(epochs: int) -> list[str]:
    """cifar10_lt_cpu's warm-up + multistep shape compressed to ``epochs``: x0.1 at 80 % and x0.01 at 90 %."""
    m1 = max(1, round(0.8 * epochs))
    m2 = max(m1 + 1, round(0.9 * epochs))
    return [f"optim.milestones=[{m1},{m2}]", f"optim.warmup_epochs={min(2, max(1, epochs // 8))}"]


def epoch_overrides(dataset: str, epochs: int | None) -> list[str]:
    if epochs is None:
        return []
    out = [f"train.epochs={epochs}"]
    if dataset == "cifar10_lt":
        out += [*cifar_cpu_schedule(epochs), "train.eval_every=1"]
    return out


def command(dataset: str, ir: float, loss: str, seed: int, epochs: int | None, extra: list[str]) -> list[str]:
    root = [f"data.root={DATA_ROOTS[dataset]}"] if dataset in DATA_ROOTS else []
    return [sys.executable, "-m", "nolb", "run", RECIPES[dataset], f"data.imbalance_ratio={ir:g}",
            f"loss.name={loss}", f"train.seed={seed}", *root, *PINS.get(dataset, []), *epoch_overrides(dataset, epochs),
            *COMMON, *extra,
            "--out", str(RUNS / name_of(dataset, ir, loss, seed)), "--overwrite", "--quiet"]


def git_commit() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def collect(run: Path, cmd: list[str], meta: dict) -> dict:
    """The result record of one finished run directory."""
    import yaml

    metrics = json.loads((run / "report" / "metrics.json").read_text())
    splits = json.loads((run / "splits.json").read_text())
    retrain = json.loads((run / "retrain" / "retrain.json").read_text())
    ensemble_file = run / "ensemble" / "ensemble.json"
    rows = {name: {**{k: row.get(k) for k in ROW_KEYS}, "intervals": row.get("intervals", {}),
                   "num_samples": row.get("num_samples")} for name, row in metrics.items()}
    chosen = {key: {k: head.get(k) for k in ("settings", "best_epoch", "tau") if k in head}
              for key, head in retrain.get("heads", {}).items()}
    if ensemble_file.is_file():
        ens = json.loads(ensemble_file.read_text())
        chosen["ensemble"] = {k: ens.get(k) for k in ("t1", "t2") if k in ens}
    final = run / "final_model.json"
    return {
        **meta, "command": cmd,
        "config": yaml.safe_load((run / "config.yaml").read_text()),
        "splits": {"sources": splits["sources"], "sizes": {s: len(splits[s]) for s in ("train", "val", "test")}},
        "roles": ROLES, "chosen_on_val": chosen, "rows": rows,
        "final_model": json.loads(final.read_text()) if final.is_file() else None,
        "stage1": json.loads((run / "metrics.json").read_text()),
    }


def protocol_effect(run: Path) -> dict:
    """What the validation protocol changes for this run's stage-1 model (METHOD.md section 7).

    The same best checkpoint is scored on: the validation split of the default protocol
    (``val_source=auto``) and of the old one (``borrow_train``: class 0 validates on its own
    training images), and on the reported test split of each (the default leaves the
    validation slice out of it; ``borrow_train`` keeps the full official test set).
    """
    import numpy as np

    from nolb.data import build_data
    from nolb.engine import components, evaluate, load_trained

    model, config, data = load_trained(run)
    options = {**config.data.options, "root": config.data.root, "imbalance_ratio": config.data.imbalance_ratio}
    old = build_data(config.data.name, **{k: v for k, v in options.items() if v is not None}, val_source="borrow_train")
    out = {}
    for protocol, d in (("auto (default)", data), ("borrow_train (old)", old)):
        for split in ("val", "test"):
            loader = components.eval_loader(config, d, getattr(d, split), device="cpu")
            rep = evaluate(model, loader, d.num_classes).report(train_counts=d.class_counts.numpy(), bootstrap=1000)
            out[f"{protocol} {split}"] = {
                "images": int(np.sum(rep.test_counts)), "am": rep.am, "hm": rep.hm, "lowest": rep.lowest,
                "class0_recall": float(rep.per_class[0]), "intervals": {k: list(v) for k, v in rep.intervals.items()},
                "source": d.splits["sources"][split]}
    return out


def run_one(dataset: str, ir: float, loss: str, seed: int, epochs: int | None, extra: list[str],
            threads: int, force: bool) -> None:
    from nolb.io import write_json

    name = name_of(dataset, ir, loss, seed)
    out = RESULTS / f"{name}.json"
    if out.is_file() and not force:
        print(f"[skip] {name}: {out.relative_to(REPO)} exists (--force redoes it)", flush=True)
        return
    cmd = command(dataset, ir, loss, seed, epochs, extra)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    RUNS.mkdir(parents=True, exist_ok=True)
    code = git_commit()  # the code the run starts with
    print(f"[start] {time.strftime('%H:%M:%S', time.gmtime())} {name}", flush=True)
    started = time.time()
    with open(RUNS / f"{name}.log", "w") as log:
        rc = subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.time() - started
    if rc != 0:
        print(f"[fail] {name} rc={rc} after {seconds:.0f}s; see {RUNS / (name + '.log')}", flush=True)
        return
    meta = {**code, "dataset": dataset, "imbalance_ratio": ir, "loss": loss, "seed": seed, "epochs": epochs,
            "threads": threads, "seconds": round(seconds, 1),
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record = collect(RUNS / name, [Path(cmd[0]).name, *cmd[1:]], meta)
    if seed == 0:  # one run per (dataset, IR, loss) is enough to see the protocol's effect (and it costs minutes)
        record["protocol_effect"] = protocol_effect(RUNS / name)
    write_json(out, record)
    print(f"[done] {name} {seconds:.0f}s -> {out.relative_to(REPO)}", flush=True)


# ---------------------------------------------------------------- report
PCT = {"accuracy", "am", "hm", "gm", "lowest", "many", "medium", "few"}
ROW_ORDER = ["base", "GML (paper)", "nolb (val-tuned GML)", "ensemble", "cRT", "LWS", "tau-norm"]
BASELINES = ("cRT", "LWS", "tau-norm")
NOLB = "nolb (val-tuned GML)"


def cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "n/a"
    if key not in PCT:
        return f"{v:g}"
    lo_hi = row.get("intervals", {}).get(key)
    return f"{100 * v:.1f} [{100 * lo_hi[0]:.1f}, {100 * lo_hi[1]:.1f}]" if lo_hi else f"{100 * v:.1f}"


def verdict(a: dict, b: dict, key: str) -> str:
    """ahead / level / behind of row ``a`` against ``b`` on ``key``: ahead or behind only when the intervals part."""
    ia, ib = a.get("intervals", {}).get(key), b.get("intervals", {}).get(key)
    if ia is None or ib is None:
        return "n/a"
    if ia[0] > ib[1]:
        return "ahead"
    if ia[1] < ib[0]:
        return "behind"
    return "level"


def best_baseline(rows: dict, key: str) -> tuple[str, dict] | None:
    present = [(b, rows[b]) for b in BASELINES if b in rows and rows[b].get(key) is not None]
    return max(present, key=lambda kv: kv[1][key]) if present else None


FINAL_ROWS = {"base": "base", "paper": "GML (paper)", "nolb": NOLB, "ensemble": "ensemble"}
FINAL = "final model (chosen on val)"
SUMMARY_KEYS = ("accuracy", "am", "hm", "lowest")


def final_choice(final: dict, margin: float | None = None) -> str | None:
    """The candidate today's final-model rule (``nolb.retrain.final_model.rank_final``, default margin
    ``ENSEMBLE_MARGIN``) picks from the validation scores a run recorded in ``final_model.json``, so runs
    made before the margin existed are reported under the rule ``nolb run`` applies now."""
    import re

    from nolb.retrain.final_model import ENSEMBLE_MARGIN, rank_final

    if not final.get("val"):
        return final.get("candidate")
    floor = re.search(r"accuracy >= ([0-9.]+)", final.get("rule", ""))
    return rank_final(final["val"], float(floor.group(1)) if floor else -1.0,
                      ENSEMBLE_MARGIN if margin is None else margin)[0]


def with_final_row(record: dict) -> dict:
    """The run's rows plus the row of the candidate today's final-model rule picks on validation."""
    rows = dict(record["rows"])
    chosen = final_choice(record.get("final_model") or {})
    if chosen in FINAL_ROWS and FINAL_ROWS[chosen] in rows:
        rows[FINAL] = {**rows[FINAL_ROWS[chosen]], "chosen": chosen}
    return rows


def group_key(r: dict) -> tuple:
    return (r["dataset"] != "fashion_mnist_lt", r["dataset"], -r["imbalance_ratio"], r["loss"])


def mean_range(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * sum(values) / len(values):.1f} [{100 * min(values):.1f}, {100 * max(values):.1f}]"


def summary_lines(records: list[dict]) -> list[str]:
    """Mean [min, max] over seeds of every row, one block per (dataset, IR, base loss)."""
    lines = ["### Summary: mean [min, max] over seeds, test split, percent", "",
             "| dataset | IR | base | seeds | row | Acc | AM | HM | Lowest | #zero (mean) |",
             "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=group_key):
        groups.setdefault((r["dataset"], r["imbalance_ratio"], r["loss"]), []).append(r)
    for (dataset, ir, loss), runs in groups.items():
        seeds = ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        all_rows = [with_final_row(r) for r in runs]
        names = [n for n in [*ROW_ORDER[:4], FINAL, *ROW_ORDER[4:]] if all(n in rows for rows in all_rows)]
        for i, name in enumerate(names):
            cells = [mean_range([rows[name][k] for rows in all_rows]) for k in SUMMARY_KEYS]
            zero = sum(rows[name]["num_zero"] for rows in all_rows) / len(all_rows)
            if name == FINAL:
                chosen = [rows[FINAL]["chosen"] for rows in all_rows]
                name = f"{FINAL}: " + ", ".join(f"{c} x{chosen.count(c)}" for c in dict.fromkeys(chosen))
            lead = f"| {dataset} | {ir:g} | {loss} | {seeds} |" if i == 0 else "| | | | |"
            lines.append(f"{lead} {name} | " + " | ".join(cells) + f" | {zero:.1f} |")
    return lines + [""]


def count_verdicts(pairs: list[tuple[dict, dict]], key: str) -> str:
    words = [verdict(a, b, key) for a, b in pairs]
    return f"{words.count('ahead')} / {words.count('level')} / {words.count('behind')}"


def verdict_lines(records: list[dict]) -> list[str]:
    """Per (dataset, IR, base): how often a row is ahead / level / behind another, per metric."""
    lines = ["### Who is ahead (per seed, 95% intervals decide; counts ahead / level / behind)", "",
             "`ahead`/`behind` only when the two intervals do not overlap; otherwise `level` (a tie). "
             "\"best baseline\" is, per seed and metric, the baseline with the best *test* value: a comparison "
             "that favours the baselines.", "",
             "| dataset | IR | base | comparison | HM | Lowest | Acc |", "| --- | ---: | --- | --- | --- | --- | --- |"]
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=group_key):
        groups.setdefault((r["dataset"], r["imbalance_ratio"], r["loss"]), []).append(with_final_row(r))
    comparisons = [("nolb vs best baseline", NOLB, None), ("nolb vs base", NOLB, "base"),
                   ("nolb vs GML (paper)", NOLB, "GML (paper)"), ("ensemble vs nolb", "ensemble", NOLB),
                   ("final model vs best baseline", FINAL, None)]
    for (dataset, ir, loss), all_rows in groups.items():
        for i, (label, a, b) in enumerate(comparisons):
            cells = []
            for key in ("hm", "lowest", "accuracy"):
                pairs = []
                for rows in all_rows:
                    other = best_baseline(rows, key) if b is None else ((b, rows[b]) if b in rows else None)
                    if a in rows and other is not None:
                        pairs.append((rows[a], other[1]))
                cells.append(count_verdicts(pairs, key) if pairs else "n/a")
            lead = f"| {dataset} | {ir:g} | {loss} |" if i == 0 else "| | | |"
            lines.append(f"{lead} {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def run_lines(r: dict) -> list[str]:
    head = (f"#### {r['dataset']} IR {r['imbalance_ratio']:g}, base loss {r['loss'].upper()}, seed {r['seed']}, "
            f"stage-1 epochs {r['config']['train']['epochs']}")
    lines = [head, "", f"- train: {r['splits']['sources']['train']}", f"- val (selection): {r['splits']['sources']['val']}",
             f"- test (reported): {r['splits']['sources']['test']}",
             f"- final model: {(r.get('final_model') or {}).get('candidate', 'n/a')} "
             f"({(r.get('final_model') or {}).get('reason', '')})",
             f"- wall time {r['seconds']:.0f} s ({r['threads']} torch thread(s), shared CPU); "
             f"command: `{' '.join(r['command'])}`", "",
             "| row | Acc | AM | HM | GM | Lowest | #zero | Many | Medium | Few |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows = r["rows"]
    for name in [n for n in ROW_ORDER if n in rows] + [n for n in rows if n not in ROW_ORDER]:
        row = rows[name]
        cells = [cell(row, k) if k in ("accuracy", "am", "hm", "gm", "lowest")
                 else (f"{row[k]}" if k == "num_zero" else (f"{100 * row[k]:.1f}" if row.get(k) is not None else "-"))
                 for k in ROW_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def effect_lines(records: list[dict]) -> list[str]:
    effect = [r for r in records if r.get("protocol_effect")]
    if not effect:
        return []
    lines = ["### Validation protocol: what changed (stage-1 best checkpoint of each run)", "",
             "The same model scored on the validation and test splits of the default protocol "
             "(`val_source=auto`: a class without enough unused training images validates on a slice of the "
             "official test set that leaves the reported test set) and of the old one (`borrow_train`: such a "
             "class validates on its own training images; the full official test set is reported).", "",
             "| run | split | images | AM | HM | Lowest | class-0 recall |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(effect, key=lambda r: (*group_key(r), r["seed"])):
        run = name_of(r["dataset"], r["imbalance_ratio"], r["loss"], r["seed"])
        for split, row in r["protocol_effect"].items():
            lines.append(f"| {run} | {split} | {row['images']:,} | {cell(row, 'am')} | {cell(row, 'hm')} | "
                         f"{cell(row, 'lowest')} | {100 * row['class0_recall']:.1f} |")
    return lines + [""]


def report_text(records: list[dict]) -> str:
    lines = [BEGIN, "<!-- generated by `python experiments/quality_study.py report` from results/quality/*.json;"
             " do not edit by hand -->", ""]
    if not records:
        return "\n".join(lines + ["No run recorded yet under results/quality/.", "", END])
    commits = sorted({r["commit"][:7] + (" (dirty)" if r.get("dirty") else "") for r in records})
    epochs = sorted({(r["dataset"], r["config"]["train"]["epochs"]) for r in records})
    lines += [f"Runs: {len(records)}; code: {', '.join(commits)}; stage-1 epochs: "
              + ", ".join(f"{d} {e}" for d, e in epochs)
              + ". Test rows: value [95% bootstrap interval over test images, 1000 resamples], percent. Selection "
              "used the validation split only; the test split was read once, for these rows.", ""]
    written = [(r.get("final_model") or {}).get("candidate") for r in records]
    now = [final_choice(r.get("final_model") or {}) for r in records]
    lines += [f"The \"{FINAL}\" row applies today's final-model rule (`nolb.retrain.final_model.choose_final`: "
              "accuracy guard, HM, AM on validation; the ensemble only with a validation HM lead above "
              "`ENSEMBLE_MARGIN`, decided on Digits-LT, see \"How the selection defaults were decided\") to the "
              "validation scores each run recorded in `final_model.json`. It picks "
              + ", ".join(f"{c} x{now.count(c)}" for c in dict.fromkeys(now)) + "; the runs themselves (code "
              "without the margin) wrote " + ", ".join(f"{c} x{written.count(c)}" for c in dict.fromkeys(written))
              + ".", ""]
    lines += summary_lines(records) + verdict_lines(records)
    lines += ["### Per-run tables", ""]
    for r in sorted(records, key=lambda r: (*group_key(r), r["seed"])):
        lines += ["<details><summary>" + name_of(r["dataset"], r["imbalance_ratio"], r["loss"], r["seed"])
                  + "</summary>", "", *run_lines(r), "</details>", ""]
    lines += effect_lines(records) + [END]
    return "\n".join(lines)


def write_report(doc: Path = DOC) -> None:
    from nolb.io import write_text

    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    section = report_text(records)
    old = doc.read_text() if doc.is_file() else "# Quality\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + section + old[old.index(END) + len(END):]
    else:  # first time: after the title line
        title, _, rest = old.partition("\n")
        new = f"{title}\n\n{section}\n{rest}"
    write_text(doc, new)
    print(f"wrote {doc.relative_to(REPO)} ({len(records)} runs)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run some (dataset, IR, loss, seed) combinations")
    r.add_argument("--dataset", choices=sorted(RECIPES), required=True)
    r.add_argument("--imbalance-ratio", type=float, default=100)
    r.add_argument("--losses", nargs="+", default=["ce", "bsce"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--epochs", type=int, default=None, help="stage-1 epochs (default: the recipe's)")
    r.add_argument("--set", nargs="*", default=[], help="extra key=value overrides")
    for q in (r, sub.add_parser("all", help="run the default plan (PLAN), then write the report")):
        q.add_argument("--threads", type=int, default=1)
        q.add_argument("--force", action="store_true", help="redo runs whose JSON exists")
    sub.add_parser("report", help="rewrite the study section of docs/QUALITY.md from results/quality/*.json")
    e = sub.add_parser("effect", help="recompute the protocol effect of finished runs into their JSON")
    e.add_argument("names", nargs="+", help="run names, e.g. fashion_mnist_lt_ir100_ce_s0")
    a = p.parse_args(argv)
    if a.cmd == "run":
        for seed in a.seeds:
            for loss in a.losses:
                run_one(a.dataset, a.imbalance_ratio, loss, seed, a.epochs, a.set, a.threads, a.force)
    elif a.cmd == "all":
        for item in PLAN:
            for seed in item["seeds"]:
                for loss in item["losses"]:
                    run_one(item["dataset"], item["imbalance_ratio"], loss, seed, item["epochs"], [], a.threads, a.force)
        write_report()
    elif a.cmd == "effect":
        from nolb.io import write_json

        for name in a.names:
            path = RESULTS / f"{name}.json"
            record = json.loads(path.read_text())
            record["protocol_effect"] = protocol_effect(RUNS / name)
            record["protocol_effect_code"] = git_commit()
            write_json(path, record)
            print(f"[effect] {name} -> {path.relative_to(REPO)}", flush=True)
    else:
        write_report()


if __name__ == "__main__":
    main()
