"""Quality study of issue 6: {dataset} x {base loss} x {seed} through `nolb run`, then a table.

    python experiments/quality_study.py run --dataset fashion_mnist_lt --losses ce bsce \
        --seeds 0 1 2 --epochs 6 --threads 1
    python experiments/quality_study.py run --dataset cifar10_lt --losses ce bsce --seeds 0 --epochs 8
    python experiments/quality_study.py report   # tables into docs/QUALITY.md (between the markers)

One run directory per (dataset, loss, seed) under runs/study/ (git-ignored).  `run` is
resumable: a run whose report/metrics.json exists is skipped; an unfinished one is redone
from scratch (--overwrite; cached features are kept by nolb).  Runs are sequential, one
process per queue; start at most two queues at once on a 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "runs" / "study"
NOLB = str(Path(sys.executable).with_name("nolb"))

RECIPES = {"fashion_mnist_lt": "fashion_mnist_lt", "cifar10_lt": "cifar10_lt_cpu"}
COMMON = ["retrain.baselines=[crt,lws,tau_norm]", "ensemble.select_temperatures=true"]


def run_dir(dataset: str, loss: str, seed: int) -> Path:
    return STUDY / f"{dataset}_{loss}_s{seed}"


def finished(d: Path) -> bool:
    return (d / "report" / "metrics.json").is_file() and (d / "report" / "report.md").is_file()


def epoch_overrides(dataset: str, epochs: int | None) -> list[str]:
    if epochs is None:
        return []
    out = [f"train.epochs={epochs}"]
    if dataset == "cifar10_lt":  # cifar10_lt_cpu: multistep x0.1 at 80 % and 90 % of training
        m1, m2 = max(1, round(0.8 * epochs)), max(2, round(0.9 * epochs))
        if m2 <= m1:
            m2 = m1 + 1
        out += [f"optim.milestones=[{m1},{m2}]", f"optim.warmup_epochs={min(2, max(1, epochs // 8))}",
                f"train.eval_every=1"]
    return out


def command(dataset: str, loss: str, seed: int, epochs: int | None, extra: list[str]) -> list[str]:
    return [NOLB, "run", RECIPES[dataset], f"loss.name={loss}", f"train.seed={seed}",
            *epoch_overrides(dataset, epochs), *COMMON, *extra,
            "--out", str(run_dir(dataset, loss, seed)), "--overwrite", "--quiet"]


def cmd_run(args: argparse.Namespace) -> None:
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    STUDY.mkdir(parents=True, exist_ok=True)
    jobs = [(s, l) for s in args.seeds for l in args.losses]  # seed-major: both bases per seed first
    for seed, loss in jobs:
        d = run_dir(args.dataset, loss, seed)
        if finished(d):
            print(f"[skip] {d.name} finished", flush=True)
            continue
        cmd = command(args.dataset, loss, seed, args.epochs, args.set or [])
        print(f"[start] {time.strftime('%H:%M:%S', time.gmtime())} {' '.join(cmd)}", flush=True)
        t0 = time.time()
        with open(STUDY / f"{d.name}.log", "w") as log:
            rc = subprocess.call(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        dt = time.time() - t0
        (STUDY / f"{d.name}.cmd.json").write_text(json.dumps(
            {"command": cmd, "rc": rc, "seconds": dt, "threads": args.threads,
             "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1))
        print(f"[done] {d.name} rc={rc} {dt:.0f}s", flush=True)



ROWS = [("base", "base"), ("GML (paper)", "GML (paper)"), ("nolb (val-tuned GML)", "nolb (val-tuned)"),
        ("ensemble", "ensemble"), ("cRT", "cRT"), ("LWS", "LWS"), ("tau-norm", "tau-norm")]
BASELINES = ["cRT", "LWS", "tau-norm"]
COLS = [("accuracy", "Acc"), ("hm", "HM"), ("gm", "GM"), ("lowest", "Lowest"), ("num_zero", "#zero"),
        ("many", "Many"), ("medium", "Medium"), ("few", "Few")]
PCT = {"accuracy", "hm", "gm", "lowest", "many", "medium", "few"}


def load_run(d: Path) -> dict:
    metrics = json.loads((d / "report" / "metrics.json").read_text())
    retrain = json.loads((d / "retrain" / "retrain.json").read_text())
    ens_file = d / "ensemble" / "ensemble.json"
    ens = json.loads(ens_file.read_text()) if ens_file.is_file() else {}
    cfg = (d / "config.yaml").read_text() if (d / "config.yaml").is_file() else ""
    cmd_file = STUDY / f"{d.name}.cmd.json"
    cmd = json.loads(cmd_file.read_text()) if cmd_file.is_file() else {}
    run = json.loads((d / "run.json").read_text()) if (d / "run.json").is_file() else {}
    return {"metrics": metrics, "retrain": retrain, "ensemble": ens, "config": cfg, "cmd": cmd, "run": run}


def value(row: dict, key: str):
    v = row.get(key)
    if v is None:
        return None
    return 100.0 * v if key in PCT else float(v)


def mean_std(xs: list) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    m = statistics.fmean(xs)
    if len(xs) == 1:
        return f"{m:.1f}"
    return f"{m:.1f} ± {statistics.stdev(xs):.1f}"


def signs(diffs: list) -> str:
    return "".join("+" if d > 1e-9 else ("-" if d < -1e-9 else "0") for d in diffs)


def best_baseline(m: dict, key: str):
    vals = [value(m[b], key) for b in BASELINES if b in m and value(m[b], key) is not None]
    return max(vals) if vals else None


def cmd_report(args: argparse.Namespace) -> None:
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for d in sorted(STUDY.glob("*_s*")):
        if not d.is_dir() or not finished(d):
            continue
        stem, seed = d.name.rsplit("_s", 1)
        dataset, loss = stem.rsplit("_", 1)
        groups.setdefault((dataset, loss), []).append((int(seed), load_run(d)))
    lines = ["<!-- generated by experiments/quality_study.py report; do not edit by hand -->", ""]
    goal_lines = []
    for (dataset, loss), runs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "fashion_mnist_lt", kv[0])):
        runs.sort()
        seeds = [s for s, _ in runs]
        ms = [r["metrics"] for _, r in runs]
        epochs = sorted({_epochs(r) for _, r in runs})
        lines += [f"### {dataset}, base loss {loss.upper()}: seeds {seeds}, stage-1 epochs {epochs}", "",
                  "Mean ± std over seeds (percent; #zero = classes with zero test recall).", "",
                  "| row | " + " | ".join(c for _, c in COLS) + " |",
                  "| --- | " + " | ".join("---:" for _ in COLS) + " |"]
        for key, label in ROWS:
            if not all(key in m for m in ms):
                continue
            cells = [mean_std([value(m[key], k) for m in ms]) for k, _ in COLS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", "Paired differences (points; mean ± std, then the sign per seed in seed order):", "",
                  "| difference | Acc | HM | GM | Lowest |", "| --- | ---: | ---: | ---: | ---: |"]
        pairs = [("nolb - base", lambda m, k: value(m["nolb (val-tuned GML)"], k) - value(m["base"], k)),
                 ("nolb - best baseline", lambda m, k: value(m["nolb (val-tuned GML)"], k) - best_baseline(m, k)),
                 ("ensemble - base", lambda m, k: value(m["ensemble"], k) - value(m["base"], k)),
                 ("GML (paper) - base", lambda m, k: value(m["GML (paper)"], k) - value(m["base"], k))]
        for name, f in pairs:
            cells = []
            for k in ("accuracy", "hm", "gm", "lowest"):
                try:
                    ds = [f(m, k) for m in ms]
                except (KeyError, TypeError):
                    cells.append("n/a")
                    continue
                cells.append(f"{mean_std(ds)} ({signs(ds)})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "(best baseline = the best of cRT, LWS, tau-norm for that metric and seed)", "",
                  "Chosen on validation, per seed:", "",
                  "| seed | nolb tau | nolb lr | nolb sampler | nolb epoch | tau-norm tau | cRT lr/epoch | LWS lr/epoch | T1 | T2 | goal met? |",
                  "| ---: | ---: | ---: | --- | ---: | ---: | --- | --- | ---: | ---: | --- |"]
        for (seed, r), m in zip(runs, ms):
            h = r["retrain"]["heads"]
            nolb, tn = h.get("nolb", {}), h.get("tau_norm", {})
            crt, lws = h.get("crt", {}), h.get("lws", {})
            st = nolb.get("settings", {})
            ok = _goal(m)
            lines.append(f"| {seed} | {st.get('prior_strength')} | {st.get('lr')} | {st.get('sampler')} | "
                         f"{nolb.get('best_epoch')} | {tn.get('tau')} | "
                         f"{crt.get('settings', {}).get('lr')}/{crt.get('best_epoch')} | "
                         f"{lws.get('settings', {}).get('lr')}/{lws.get('best_epoch')} | "
                         f"{r['ensemble'].get('t1')} | {r['ensemble'].get('t2')} | {ok} |")
            goal_lines.append(f"| {dataset} | {loss} | {seed} | {ok} |")
        secs = [r["cmd"].get("seconds") for _, r in runs if r["cmd"].get("seconds")]
        if secs:
            lines += ["", f"Wall time per run (stages 1-3 + report): {mean_std(secs)} s."]
        lines.append("")
    if goal_lines:
        lines += ["### Goal check per run", "",
                  "Goal: nolb HM >= best baseline HM, nolb lowest >= best baseline lowest, nolb Acc >= base Acc - 1.", "",
                  "| dataset | base | seed | result |", "| --- | --- | ---: | --- |", *goal_lines, ""]
    lines += variants_section(groups)
    lines += split_section(groups)
    lines += reselect_section(groups)
    text = "\n".join(lines)
    out = Path(args.out)
    if out.is_file() and BEGIN in out.read_text():
        old = out.read_text()
        text = old[: old.index(BEGIN) + len(BEGIN)] + "\n" + text + "\n" + old[old.index(END):]
    out.write_text(text)
    print(f"wrote {args.out} ({sum(len(v) for v in groups.values())} runs)")


SPLIT_RULES = ["nolb on val (3 taus)", "nolb on val (5 taus)", "nolb on val soft-HM (3 taus)",
               "nolb on val soft-HM (5 taus)", "nolb on A (3 taus)", "nolb on A (5 taus)", "cRT on val", "cRT on A",
               "B-oracle gml", "B-oracle cRT"]


def split_section(groups: dict) -> list[str]:
    """experiments/selection_split.py: choose on val (100/class) or on test half A, score on half B."""
    lines = ["### Does the small validation split limit the selection? (test half B only)", "",
             "experiments/selection_split.py: the test split is cut into stratified halves A and B; every",
             "candidate (GML tau x lr x sampler, and cRT per lr) is trained once and scored after each epoch;",
             "(candidate, epoch) is chosen on val (100 images/class, as `nolb run` does), on val with a soft",
             "(mean true-class probability) HM, or on A (500/class); everything is scored on B.",
             "`B-oracle` chooses on B itself (upper bound).  Last column: minus cRT chosen the same way (val or A).", "",
             "| dataset | base | rule | seeds | B Acc | B HM | B lowest | HM - cRT (same split) | lowest - cRT |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    any_row = False
    for (dataset, loss), runs in sorted(groups.items()):
        res = []
        for seed, _ in sorted(runs):
            f = STUDY / f"split_{dataset}_{loss}_s{seed}.json"
            if f.is_file():
                res.append((seed, json.loads(f.read_text())[0]))
        for rule in SPLIT_RULES:
            rows = [(seed, r) for seed, r in res if rule in r]
            if not rows:
                continue
            any_row = True
            ref = "cRT on A" if " on A" in rule else ("B-oracle cRT" if "oracle" in rule else "cRT on val")
            dh = [r[rule]["B_hm"] - r[ref]["B_hm"] for _, r in rows]
            dl = [r[rule]["B_lowest"] - r[ref]["B_lowest"] for _, r in rows]
            cmp_h = f"{mean_std(dh)} ({signs(dh)})" if not rule.startswith("cRT") else ""
            cmp_l = f"{mean_std(dl)} ({signs(dl)})" if not rule.startswith("cRT") else ""
            lines.append(f"| {dataset} | {loss} | {rule} | {[s for s, _ in rows]} | "
                         f"{mean_std([r[rule]['B_acc'] for _, r in rows])} | {mean_std([r[rule]['B_hm'] for _, r in rows])} | "
                         f"{mean_std([r[rule]['B_lowest'] for _, r in rows])} | {cmp_h} | {cmp_l} |")
    return lines + [""] if any_row else []


def reselect_section(groups: dict) -> list[str]:
    """experiments/reselect.py --criterion soft_hm: the nolb head re-chosen on the soft validation HM."""
    soft = {}
    for f in sorted(STUDY.glob("reselect_soft*.json")):
        soft.update(json.loads(f.read_text()))
    if not soft:
        return []
    lines = ["### The nolb head chosen on the soft validation HM (the new default), full test split", "",
             "experiments/reselect.py: the same candidates and cached features as the `nolb (val-tuned)` row,",
             "chosen (candidate and epoch) on the HM of the soft per-class validation recall instead of the",
             "arg-max recall. Differences are paired per seed against the same run's rows.", "",
             "| dataset | base | seeds | Acc | HM | Lowest | HM - nolb(arg-max) | Lowest - nolb(arg-max) | HM - best baseline | Lowest - best baseline | Acc - base | goal met |",
             "| --- | --- | --- | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- |"]
    for (dataset, loss), runs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "fashion_mnist_lt", kv[0])):
        rows = [(seed, soft[f"{dataset}_{loss}_s{seed}"], r["metrics"]) for seed, r in sorted(runs)
                if f"{dataset}_{loss}_s{seed}" in soft]
        if not rows:
            continue
        n = "nolb (val-tuned GML)"
        d_old_h = [x["hm"] - value(m[n], "hm") for _, x, m in rows]
        d_old_l = [x["lowest"] - value(m[n], "lowest") for _, x, m in rows]
        d_bb_h = [x["hm"] - best_baseline(m, "hm") for _, x, m in rows]
        d_bb_l = [x["lowest"] - best_baseline(m, "lowest") for _, x, m in rows]
        d_acc = [x["acc"] - value(m["base"], "accuracy") for _, x, m in rows]
        met = sum(1 for h, l, a in zip(d_bb_h, d_bb_l, d_acc) if h >= -1e-9 and l >= -1e-9 and a >= -1.0)
        f2 = lambda ds: f"{mean_std(ds)} ({signs(ds)})"  # noqa: E731
        lines.append(f"| {dataset} | {loss} | {[s for s, _, _ in rows]} | {mean_std([x['acc'] for _, x, _ in rows])} | "
                     f"{mean_std([x['hm'] for _, x, _ in rows])} | {mean_std([x['lowest'] for _, x, _ in rows])} | "
                     f"{f2(d_old_h)} | {f2(d_old_l)} | {f2(d_bb_h)} | {f2(d_bb_l)} | {f2(d_acc)} | {met}/{len(rows)} |")
    return lines + [""]


BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"
VARIANTS = ["current", "5 taus (hm)", "current+adjust", "oracle (test-chosen)"]


def variants_section(groups: dict) -> list[str]:
    """Selection variants re-run on the cached features (experiments/selection_variants.py)."""
    lines = ["### Selection variants on the same cached features (test metrics; choice on val only)", "",
             "From experiments/selection_variants.py (sv_<run>.json). `current` re-runs the default selection;",
             "`5 taus (hm)` adds tau 0.25 and 0.75 to the grid; `current+adjust` adds a post-hoc",
             "z - g log n on the chosen head (g on val); `oracle` picks by TEST HM (upper bound, not a method).",
             "Goal columns: nolb-variant minus the best of cRT/LWS/tau-norm of that run (HM, lowest), per seed.", "",
             "| dataset | base | variant | seeds | Acc | HM | Lowest | HM - best baseline | Lowest - best baseline |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    any_row = False
    for (dataset, loss), runs in sorted(groups.items()):
        svs = []
        for seed, r in sorted(runs):
            f = STUDY / f"sv_{dataset}_{loss}_s{seed}.json"
            if f.is_file():
                svs.append((seed, json.loads(f.read_text())[0], r["metrics"]))
        if not svs:
            continue
        for v in VARIANTS:
            rows = [(seed, sv[v], m) for seed, sv, m in svs if v in sv]
            if not rows:
                continue
            any_row = True
            dh = [row["hm"] - best_baseline(m, "hm") for _, row, m in rows]
            dl = [row["lowest"] - best_baseline(m, "lowest") for _, row, m in rows]
            lines.append(f"| {dataset} | {loss} | {v} | {[s for s, _, _ in rows]} | "
                         f"{mean_std([row['acc'] for _, row, _ in rows])} | {mean_std([row['hm'] for _, row, _ in rows])} | "
                         f"{mean_std([row['lowest'] for _, row, _ in rows])} | {mean_std(dh)} ({signs(dh)}) | "
                         f"{mean_std(dl)} ({signs(dl)}) |")
    return lines + [""] if any_row else []


def _epochs(r: dict):
    try:
        import yaml
        return yaml.safe_load(r["config"])["train"]["epochs"]
    except Exception:  # noqa: BLE001
        return None


def _goal(m: dict) -> str:
    n, b = m["nolb (val-tuned GML)"], m["base"]
    fails = []
    if value(n, "hm") < best_baseline(m, "hm") - 1e-9:
        fails.append(f"HM {value(n, 'hm') - best_baseline(m, 'hm'):+.1f}")
    if value(n, "lowest") < best_baseline(m, "lowest") - 1e-9:
        fails.append(f"lowest {value(n, 'lowest') - best_baseline(m, 'lowest'):+.1f}")
    if value(n, "accuracy") < value(b, "accuracy") - 1.0 - 1e-9:
        fails.append(f"Acc {value(n, 'accuracy') - value(b, 'accuracy'):+.1f} vs base")
    return "yes" if not fails else "no: " + ", ".join(fails)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", choices=sorted(RECIPES), required=True)
    r.add_argument("--losses", nargs="+", default=["ce", "bsce"])
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--set", nargs="*", help="extra key=value overrides")
    rep = sub.add_parser("report")
    rep.add_argument("--out", default=str(REPO / "docs" / "QUALITY.md"),
                     help="rewrites the part between the tables:begin/end markers (whole file if absent)")
    a = p.parse_args()
    if a.cmd == "run":
        cmd_run(a)
    else:
        cmd_report(a)
