"""Decide the selection defaults on Digits-LT, a dataset no quality claim reports (issue 12 item 4).

The defaults that choose a run's stage-2 head and final model (``retrain.select_criterion``,
``retrain.select_acc_tolerance``, the ``select_*`` grids, the final-model rule, the ensemble
temperatures) are compared here on Digits-LT (scikit-learn's embedded digits), never on the
Fashion-MNIST-LT / CIFAR-10-LT test sets that docs/QUALITY.md reports.  Each option chooses on
the Digits-LT *validation* split (20 images per class) exactly as ``nolb run`` does
(:func:`nolb.retrain.select_head`, :class:`nolb.retrain.Criterion`,
:func:`nolb.retrain.final_model.choose_final`, :func:`nolb.retrain.select_temperatures`);
its choice is then scored on the Digits-LT *test* split (50 images per class), which is
rule-development data here, never a reported figure.

    python experiments/rule_development.py train     # stage-1 runs: runs/rules/ (git-ignored)
    python experiments/rule_development.py compare   # every option on each run's cached features
    python experiments/rule_development.py report    # results/rules/summary.json + docs/QUALITY.md section
    python experiments/rule_development.py all       # the three in turn

``train`` runs ``nolb run digits_lt`` (small CNN, CE, 30 stage-1 epochs, pinned; stage 2 and 3 with
the defaults, as in the quality study) for every (IR, seed); the seed sets the training
subsample, the stage-1 and the stage-2 seeds; validation and test are the dataset's fixed
held-out images.  ``compare`` writes ``results/rules/digits_lt_ir<IR>_s<seed>.json`` (command,
commit, seed, every option's choice, its validation and test scores).  ``report`` pairs each
option with the default on the same run and gives the mean test difference with a 95%
bootstrap interval over runs and a sign test; a difference whose interval contains 0 is a tie.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from selection_variants import load, metrics  # noqa: E402

from nolb.config import load_config  # noqa: E402
from nolb.io import write_json, write_text  # noqa: E402
from nolb.retrain import Criterion, HeadSettings, select_head, select_temperatures, train_head  # noqa: E402
from nolb.retrain.ensemble import ensemble_log_probs  # noqa: E402
from nolb.retrain.final_model import choose_final  # noqa: E402
from nolb.retrain.scoring import head_logits, per_class_recall, validation_score  # noqa: E402
from nolb.retrain.selection import nolb_candidates  # noqa: E402

RUNS = REPO / "runs" / "rules"
RESULTS = REPO / "results" / "rules"
DOC = REPO / "docs" / "QUALITY.md"
BEGIN, END = "<!-- rules:begin -->", "<!-- rules:end -->"
ANCHOR = "<!-- study:end -->"
IRS = (10, 100)
SEEDS = tuple(range(10))
RECIPE = "digits_lt"
PINS = ["train.epochs=30"]  # the recipe's stage 1 when the results were made (it has 120 epochs now)
BOOTSTRAP, BOOTSTRAP_SEED = 10000, 0
DEFAULT = "soft_hm, guard 0.01"
# name -> (criterion, accuracy tolerance or None for no guard, grid overrides of RetrainConfig)
HEAD_OPTIONS = {
    DEFAULT: ("soft_hm", 0.01, {}),
    "hm, guard 0.01": ("hm", 0.01, {}),
    "soft_hm, no guard": ("soft_hm", None, {}),
    "soft_hm, guard 0.05": ("soft_hm", 0.05, {}),
    "hm, no guard": ("hm", None, {}),
    "hm, guard 0.05": ("hm", 0.05, {}),
    "grid: tau {0,.25,.5,.75,1}": ("soft_hm", 0.01, {"select_prior_strengths": [0.0, 0.25, 0.5, 0.75, 1.0]}),
    "grid: tau {1} only": ("soft_hm", 0.01, {"select_prior_strengths": [1.0]}),
    "grid: lr {.01,.02,.05,.1}": ("soft_hm", 0.01, {"select_lrs": [0.01, 0.02, 0.05, 0.1]}),
    "grid: lr {.02} only": ("soft_hm", 0.01, {"select_lrs": [0.02]}),
    "grid: instance sampler only": ("soft_hm", 0.01, {"select_samplers": ["instance"]}),
    "grid: class-balanced sampler only": ("soft_hm", 0.01, {"select_samplers": ["class_balanced"]}),
}
FINAL_DEFAULT = "best on val (today)"  # the rule before this study: no margin
MARGINS = (0.01, 0.02, 0.05)
METRICS = ("hm", "acc", "lowest", "gm", "num_zero")


def name_of(ir: int, seed: int) -> str:
    return f"digits_lt_ir{ir}_s{seed}"


def train_command(ir: int, seed: int) -> list[str]:
    return [sys.executable, "-m", "nolb", "run", RECIPE, f"data.imbalance_ratio={ir}", f"data.options.seed={seed}",
            f"train.seed={seed}", f"retrain.seed={seed}", "retrain.baselines=[]", *PINS,
            "--out", str(RUNS / name_of(ir, seed)), "--overwrite", "--quiet"]


def git_commit() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def plan(irs, seeds) -> list[tuple[int, int]]:
    """(IR, seed) pairs, seed-major: an interrupted sweep leaves whole seeds of every IR."""
    return [(ir, seed) for seed in seeds for ir in irs]


def train(ir: int, seed: int) -> None:
    if (RUNS / name_of(ir, seed) / "final_model.json").is_file():
        return
    print(f"train {name_of(ir, seed)}", flush=True)
    subprocess.run(train_command(ir, seed), cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def test_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    zero = int((per_class_recall(logits, labels, num_classes) == 0).sum())
    return {**metrics(logits, labels, num_classes), "num_zero": zero}


def head_options(run: Path, tr, va, te, orig, counts, paper: HeadSettings) -> tuple[dict, dict]:
    """Every stage-2 option's chosen nolb head (choice, validation and test scores); the default's heads."""
    config = load_config(run / "config.yaml").retrain
    num_classes = len(counts)
    base_val = validation_score(head_logits(orig, va.features), va.labels, num_classes)
    out, chosen = {}, {}
    for name, (criterion, tolerance, grid) in HEAD_OPTIONS.items():
        rule = Criterion.named(criterion, num_classes, None if tolerance is None else base_val, tolerance or 0.0)
        candidates = nolb_candidates(paper, replace(config, **grid))
        best = select_head(candidates, tr, va, counts, orig, rule, desc=name).best
        s = best.settings
        out[name] = {"criterion": criterion, "tolerance": tolerance, "grid": grid, "candidates": len(candidates),
                     "choice": {"prior_strength": s.prior_strength, "lr": s.lr, "sampler": s.sampler,
                                "epoch": best.best_epoch},
                     "val": best.val_score.to_dict(), "test": test_metrics(head_logits(best.head, te.features),
                                                                           te.labels, num_classes)}
        if name == DEFAULT:
            chosen = {"rule": rule, "nolb": best.head}
    return out, chosen


def final_options(run: Path, tr, va, te, orig, counts, paper: HeadSettings, chosen: dict) -> dict:
    """Final-model rules over base / paper / nolb (the default's) / ensemble (temperatures on val or 1)."""
    num_classes = len(counts)
    ensemble_config = load_config(run / "config.yaml").ensemble
    paper_head = train_head(paper, tr, counts, orig, va).head
    heads = {"base": orig, "paper": paper_head, "nolb": chosen["nolb"]}
    val = {k: head_logits(h, va.features) for k, h in heads.items()}
    test = {k: head_logits(h, te.features) for k, h in heads.items()}
    temps = select_temperatures(val["base"], val["nolb"], va.labels, num_classes, ensemble_config.temperature_grid,
                                ensemble_config.space)
    for key, (t1, t2) in (("ensemble", (temps.t1, temps.t2)), ("ensemble T=(1,1)", (1.0, 1.0))):
        val[key] = ensemble_log_probs(val["base"], val["nolb"], t1, t2, ensemble_config.space)
        test[key] = ensemble_log_probs(test["base"], test["nolb"], t1, t2, ensemble_config.space)
    pool = {k: val[k] for k in ("base", "paper", "nolb", "ensemble")}
    val_hm = {k: validation_score(v, va.labels, num_classes).hm for k, v in val.items()}
    picks = {FINAL_DEFAULT: choose_final(pool, va.labels, chosen["rule"], ensemble_margin=0.0).candidate,
             "always nolb": "nolb", "always ensemble": "ensemble", "always ensemble T=(1,1)": "ensemble T=(1,1)"}
    for margin in MARGINS:
        picks[f"ensemble only if val HM lead > {margin:g}"] = choose_final(pool, va.labels, chosen["rule"],
                                                                           ensemble_margin=margin).candidate
    out = {name: {"candidate": pick, "val_hm": val_hm[pick], "test": test_metrics(test[pick], te.labels, num_classes)}
           for name, pick in picks.items()}
    out["_temperatures"] = {"t1": temps.t1, "t2": temps.t2}
    return out


def compare(ir: int, seed: int) -> None:
    torch.set_num_threads(1)
    commit = git_commit()
    run = RUNS / name_of(ir, seed)
    splits, orig, counts, cfg = load(run)
    tr, va, te = splits["train"], splits["val"], splits["test"]
    paper = HeadSettings(**cfg)
    heads, chosen = head_options(run, tr, va, te, orig, counts, paper)
    final = final_options(run, tr, va, te, orig, counts, paper, chosen)
    sources = json.loads((run / "splits.json").read_text())["sources"]
    record = {
        "run": run.name, "dataset": "digits_lt", "imbalance_ratio": ir, "seed": seed,
        "train_command": ["python", *train_command(ir, seed)[1:]],
        "compare_command": "python experiments/rule_development.py compare", **commit,
        "split_sources": sources, "class_counts": counts.tolist(),
        "roles": {"every option's choice": "val (20 per class)", "scores below": "test (50 per class), "
                  "Digits-LT: rule-development data, not reported as a quality claim"},
        "base_test": test_metrics(head_logits(orig, te.features), te.labels, len(counts)),
        "head_options": heads, "final_options": final,
    }
    write_json(RESULTS / f"{run.name}.json", record)
    print(f"{run.name}: default HM {heads[DEFAULT]['test']['hm']:.1f}, hm {heads['hm, guard 0.01']['test']['hm']:.1f}, "
          f"final {final[FINAL_DEFAULT]['candidate']}", flush=True)


def paired(records: list[dict], family: str, option: str, reference: str, metric: str) -> dict:
    """Mean of (option - reference) over runs, its 95% bootstrap interval over runs, wins/ties/losses."""
    from scipy.stats import binomtest

    d = np.array([r[family][option]["test"][metric] - r[family][reference]["test"][metric] for r in records])
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))].mean(1)
    wins, losses = int((d > 1e-9).sum()), int((d < -1e-9).sum())
    p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
    return {"mean": float(d.mean()), "ci": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "wins": wins, "ties": len(d) - wins - losses, "losses": losses, "sign_p": float(p), "runs": len(d)}


def verdict(stat: dict, higher_is_better: bool = True) -> str:
    low, high = stat["ci"]
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "tie"


def summarise(records: list[dict]) -> dict:
    groups = {"all": records, **{f"IR {ir}": [r for r in records if r["imbalance_ratio"] == ir] for ir in IRS}}
    out = {}
    for family, reference in (("head_options", DEFAULT), ("final_options", FINAL_DEFAULT)):
        options = [k for k in records[0][family] if not k.startswith("_")]
        out[family] = {"reference": reference, "options": {}}
        for option in options:
            row = {"mean_test": {g: {m: float(np.mean([r[family][option]["test"][m] for r in rs])) for m in METRICS}
                                 for g, rs in groups.items()}}
            if option != reference:
                row["diff"] = {g: {m: paired(rs, family, option, reference, m) for m in METRICS} for g, rs in groups.items()}
                row["verdict_hm"] = verdict(row["diff"]["all"]["hm"])
            out[family]["options"][option] = row
    return out


def fmt(stat: dict) -> str:
    return f"{stat['mean']:+.1f} [{stat['ci'][0]:+.1f}, {stat['ci'][1]:+.1f}]"


def table(summary: dict, family: str) -> list[str]:
    block = summary[family]
    lines = ["| option | HM | Lowest | #zero | dHM all runs | dHM IR 10 | dHM IR 100 | dLowest | dTop-1 | HM W/T/L (sign p) | verdict |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for option, row in block["options"].items():
        m = row["mean_test"]["all"]
        head = f"| {option} | {m['hm']:.1f} | {m['lowest']:.1f} | {m['num_zero']:.2f} "
        if "diff" not in row:
            lines.append(head + "| (reference) | | | | | | |")
            continue
        d = row["diff"]
        hm = d["all"]["hm"]
        lines.append(head + f"| {fmt(hm)} | {fmt(d['IR 10']['hm'])} | {fmt(d['IR 100']['hm'])} | {fmt(d['all']['lowest'])} "
                     f"| {fmt(d['all']['acc'])} | {hm['wins']}/{hm['ties']}/{hm['losses']} ({hm['sign_p']:.2f}) "
                     f"| {row['verdict_hm']} |")
    return lines


def decisions(summary: dict) -> list[str]:
    """What the decision rule (see the report's text) makes of each family, as doc lines."""
    lines = []
    for family, what in (("head_options", "Stage-2 defaults (criterion, guard, grids)"),
                         ("final_options", "Final-model rule")):
        winners = [(o, r) for o, r in summary[family]["options"].items()
                   if r.get("verdict_hm") == "better" and r["diff"]["all"]["acc"]["ci"][1] >= 0]
        if not winners:
            lines.append(f"- {what}: no option meets the rule; `{summary[family]['reference']}` stays.")
        for option, row in winners:
            hm = row["diff"]["all"]["hm"]
            lines.append(f"- {what}: `{option}` meets the rule (dHM {fmt(hm)}, lower end {hm['ci'][0]:+.2f}; "
                         f"W/T/L {hm['wins']}/{hm['ties']}/{hm['losses']}, sign p {hm['sign_p']:.2f}) and replaces "
                         f"`{summary[family]['reference']}`.")
    return lines


def report() -> None:
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("digits_lt_ir*_s*.json"))]
    if not records:
        sys.exit(f"no results under {RESULTS}: run `compare` first")
    summary = summarise(records)
    seeds = sorted({r["seed"] for r in records})
    commits = sorted({r["commit"][:7] + (" (dirty)" if r["dirty"] else "") for r in records})
    write_json(RESULTS / "summary.json", {"command": "python experiments/rule_development.py report",
                                          "runs": [r["run"] for r in records], "commits": commits,
                                          "bootstrap": {"resamples": BOOTSTRAP, "seed": BOOTSTRAP_SEED}, **summary})
    lines = [BEGIN, "<!-- generated by `python experiments/rule_development.py report` from results/rules/*.json; "
             "do not edit by hand -->", "",
             f"Runs: Digits-LT at IR {' and '.join(str(i) for i in IRS)}, seeds {seeds[0]}-{seeds[-1]} "
             f"({len(records)} runs; code {', '.join(commits)}). Scores are Digits-LT **test** recall in percent "
             "(500 images, 50 per class, the same images in every run); every choice was made on its 200 validation "
             "images. dX: mean over runs of (option - reference) on the same run, [95% bootstrap interval over runs]; "
             "W/T/L: runs where the option's test HM is above / equal to / below the reference's, with the two-sided "
             "sign-test p. Verdict on dHM over all runs: a tie unless the interval excludes 0.", "",
             f"Each run: `nolb run {RECIPE}` (small CNN, CE, 30 stage-1 epochs, the recipe's until issue 16 gave it 120, pinned; stage 2 and 3 with the "
             "defaults, no baselines), the seed setting the training subsample, stage 1 and stage 2. Decision rule, "
             "fixed before the runs: an option replaces today's default only if its dHM interval over all runs lies "
             "above 0 and its dTop-1 interval does not lie below 0; otherwise the default stays.", "",
             "**Stage-2 nolb head** (criterion, accuracy guard, grids; reference: the default "
             f"`{DEFAULT}`):", "", *table(summary, "head_options"), "",
             "**Final model** (candidates base / paper / nolb / ensemble, nolb head of the default rule; "
             f"reference: `{FINAL_DEFAULT}`, arg-max HM then AM with the guard, ties nolb > ensemble > paper > base; "
             "the margin rules keep the best non-ensemble candidate unless the ensemble leads it on validation HM by "
             "more than the margin):", "", *table(summary, "final_options"), "", "**Decisions** (by the rule above):",
             "", *decisions(summary), "", END]
    text = DOC.read_text()
    section = "\n".join(lines)
    if BEGIN in text:
        start, stop = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + section + text[stop:]
    else:
        text = text.replace(ANCHOR, ANCHOR + "\n\n## How the selection defaults were decided (Digits-LT)\n\n" + section, 1)
    write_text(DOC, text)
    print(f"wrote {RESULTS / 'summary.json'} and the rules section of {DOC}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("train", "compare", "report", "all"))
    parser.add_argument("--irs", type=int, nargs="+", default=list(IRS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--force", action="store_true", help="compare again runs whose JSON exists")
    args = parser.parse_args()
    for ir, seed in plan(args.irs, args.seeds):
        if args.step in ("train", "all"):
            train(ir, seed)
        if args.step in ("compare", "all") and (args.force or not (RESULTS / f"{name_of(ir, seed)}.json").is_file()):
            compare(ir, seed)
    if args.step in ("report", "all"):
        report()


if __name__ == "__main__":
    main()
