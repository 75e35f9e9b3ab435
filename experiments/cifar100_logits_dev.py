"""Choosing GMLClassifier's default start on val_lt halves, never on test_lt (issue 17).

    python experiments/cifar100_logits_dev.py                 # 3 models x 5 splits -> dev_*.json
    python experiments/cifar100_logits_dev.py --report        # only print the summary from the JSON

The rule-development study behind ``GMLClassifier``'s default ``init_coef``.  For each of
the three CIFAR-100-LT models (/work/shared/data/cifar100lt-logits; logits = features) and
each seed, ``val_lt`` is split into two stratified halves A and B by *distinct image*
(``cifar_index``: val_lt replicates images, and every copy goes to the same half).  A class
with d distinct images puts floor(d/2) or ceil(d/2) of them (at random) in B and the rest in
A; the 8 classes with a single val_lt image go to A only (the selection needs every class),
so B scores the 92 classes it holds, one row per distinct image.  Every candidate fits on
the ``train`` outputs, selects on A exactly as its default would, and is scored on B (AM,
HM, GM with a zero recall counted as 0.1 %, lowest recall, #zero).  ``test_lt`` is not read.

Candidates:

* ``fresh``: a fresh head (``init_coef=None``, the default until this study), soft-HM rule;
* ``identity``: started from the model (``init_coef="identity"``, stage 2's init=original);
  ``auto`` (identity when X reads as scores: one column per class whose arg-max predicts y; fresh otherwise) *is* this candidate
  on these features (100 logit columns, 100 classes);
* ``both``: both fits, the rule keeps the head with the better (soft HM, soft AM) on A;
* the same three with the arg-max rule (``selection_criterion="hm"``);
* ``post-hoc LA``: logits - tau log prior, tau in 0..2 chosen on A (the bar); ``base``.

Decision rule, fixed before the run: the default is the start whose mean over the 3 models
x 5 splits of B's GM is highest (GM weighs the average and the worst classes and is less
set by the 0.1 % floor than HM with 1-3 B images per tail class); within 0.5 points, the
higher mean HM decides.  AM, HM and #zero against post-hoc LA are reported beside it.

Writes results/cifar100lt_logits/dev_<model>.json (command, commit, seeds, per-split rows and
the settings each selection chose on A) and dev_summary.json (means over models and splits).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from nolb.estimators import LogitAdjustedClassifier  # noqa: E402
from nolb.estimators.linear_head import GMLClassifier  # noqa: E402
from nolb.io import read_json, write_json  # noqa: E402
from nolb.metrics.recall import geometric_mean, harmonic_mean  # noqa: E402
from nolb.provenance import git_commit  # noqa: E402
from nolb.retrain.scoring import Criterion  # noqa: E402

DATA = Path("/work/shared/data/cifar100lt-logits")
OUT = REPO / "results" / "cifar100lt_logits"
MODELS = ("ce", "balsoftmax", "logitadjust")
SEEDS = (0, 1, 2, 3, 4)
STARTS = {"fresh": None, "identity": "identity"}
METRICS = ("am", "hm", "gm", "lowest", "num_zero")


def load(folder: Path, model: str, split: str) -> dict:
    with np.load(folder / f"{model}_{split}.npz") as z:
        return {key: z[key] for key in z.files}


def split_halves(labels: np.ndarray, images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows of A, one row per distinct image of B): stratified by class, grouped by image."""
    rng = np.random.default_rng(seed)
    in_b = set()
    for c in np.unique(labels):
        distinct = rng.permutation(np.unique(images[labels == c]))
        if distinct.size < 2:
            continue
        take = distinct.size // 2 + (int(rng.integers(2)) if distinct.size % 2 else 0)
        in_b.update(distinct[:take].tolist())
    b_mask = np.isin(images, list(in_b))
    a_rows = np.flatnonzero(~b_mask)
    _, first = np.unique(images[b_mask], return_index=True)
    return a_rows, np.sort(np.flatnonzero(b_mask)[first])


def scores_on(y: np.ndarray, pred: np.ndarray) -> dict:
    classes = np.unique(y)
    recall = np.array([np.mean(pred[y == c] == c) for c in classes])
    return {"am": float(recall.mean()), "hm": float(harmonic_mean(recall, 1e-3)),
            "gm": float(geometric_mean(recall, 1e-3)), "lowest": float(recall.min()),
            "num_zero": int((recall == 0).sum())}


def rule_key(estimator, X: np.ndarray, y_codes: np.ndarray, criterion: str) -> tuple:
    """The selection rule's (feasible, HM, AM) key of a fitted head on A (soft or arg-max)."""
    rule = Criterion.named(criterion, 100)
    return tuple(rule.key(torch.from_numpy(estimator.decision_function(X).astype(np.float32)),
                          torch.from_numpy(y_codes)))


def one_split(train: dict, val: dict, seed: int) -> dict:
    a, b = split_halves(val["labels"], val["cifar_index"], seed)
    X, y, counts = train["logits"], train["labels"], train["train_counts"]
    Xa, ya, Xb, yb = val["logits"][a], val["labels"][a], val["logits"][b], val["labels"][b]
    rows = {"base": {"scores": scores_on(yb, Xb.argmax(1))}}
    la = LogitAdjustedClassifier("scores", class_counts=counts).fit(X, y, X_val=Xa, y_val=ya)
    rows["post-hoc LA"] = {"scores": scores_on(yb, la.predict(Xb)), "chosen": {"tau": la.tau_}}
    for criterion in ("soft_hm", "hm"):
        fitted = {}
        for start, init in STARTS.items():
            est = GMLClassifier(class_counts=counts, init_coef=init, selection_criterion=criterion)
            est.fit(X, y, X_val=Xa, y_val=ya)
            fitted[start] = est
            s = est.head_settings_
            rows[f"{start} ({criterion})"] = {
                "scores": scores_on(yb, est.predict(Xb)),
                "chosen": {"prior_strength": s["prior_strength"], "lr": s["lr"], "sampler": s["sampler"],
                           "epoch": est.best_epoch_, "rule_key_on_A": list(rule_key(est, Xa, ya, criterion))}}
        keys = {start: rule_key(est, Xa, ya, criterion) for start, est in fitted.items()}
        kept = max(STARTS, key=lambda start: (keys[start], -list(STARTS).index(start)))  # ties: fresh
        rows[f"both ({criterion})"] = {"scores": rows[f"{kept} ({criterion})"]["scores"], "chosen": {"start": kept}}
    return {"seed": seed, "a_rows": int(a.size), "b_images": int(b.size), "b_classes": int(np.unique(yb).size),
            "rows": rows}


def run_model(model: str, folder: Path, seeds, command: list[str]) -> dict:
    started = time.perf_counter()
    train, val = load(folder, model, "train"), load(folder, model, "val_lt")
    splits = []
    for seed in seeds:
        splits.append(one_split(train, val, seed))
        print(f"{model} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    return {"command": command, "commit": git_commit(REPO), "seeds": list(seeds), "model": model, "data": str(folder),
            "config": {"halves": "val_lt split by distinct cifar_index, stratified by class; single-image classes "
                                 "in A only; B scored one row per distinct image over the classes it holds",
                       "fit": "train outputs", "test_lt": "not read",
                       "auto": "identical to identity here (100 columns = 100 classes)"},
            "splits": splits, "seconds": time.perf_counter() - started}


def summary(results: dict[str, dict], command: list[str]) -> dict:
    names = list(next(iter(results.values()))["splits"][0]["rows"])
    cells = {n: {m: [] for m in METRICS} for n in names}
    vs_la = {n: {m: [] for m in METRICS} for n in names}
    per_model = {}
    for model, result in results.items():
        per_model[model] = {}
        for split in result["splits"]:
            la = split["rows"]["post-hoc LA"]["scores"]
            for n in names:
                for m in METRICS:
                    cells[n][m].append(split["rows"][n]["scores"][m])
                    vs_la[n][m].append(split["rows"][n]["scores"][m] - la[m])
        for n in names:
            per_model[model][n] = {m: float(np.mean([s["rows"][n]["scores"][m] - s["rows"]["post-hoc LA"]["scores"][m]
                                                     for s in result["splits"]])) for m in METRICS}
    rows = {n: {"mean": {m: float(np.mean(v)) for m, v in cells[n].items()},
                "minus_LA_mean": {m: float(np.mean(v)) for m, v in vs_la[n].items()},
                "minus_LA_range": {m: [float(np.min(v)), float(np.max(v))] for m, v in vs_la[n].items()},
                "minus_LA_per_model": {model: per_model[model][n] for model in results}} for n in names}
    starts = [f"{s} (soft_hm)" for s in ("fresh", "identity", "both")] + [f"{s} (hm)" for s in ("fresh", "identity", "both")]
    best_gm = max(rows[n]["mean"]["gm"] for n in starts)
    close = [n for n in starts if rows[n]["mean"]["gm"] >= best_gm - 0.005]
    winner = max(close, key=lambda n: rows[n]["mean"]["hm"])
    both_chose = {f"{model} seed {s['seed']}": {c: s["rows"][f"both ({c})"]["chosen"]["start"] for c in ("soft_hm", "hm")}
                  for model, result in results.items() for s in result["splits"]}
    return {"command": command, "commit": git_commit(REPO), "models": list(results),
            "seeds": next(iter(results.values()))["seeds"],
            "rule": "highest mean B GM over models x splits; within 0.5 points the higher mean HM",
            "winner": winner, "rows": rows, "both_chose": both_chose}


def print_summary(s: dict) -> None:
    print(f"winner: {s['winner']} ({s['rule']})")
    print(f"{'candidate':22s} " + " ".join(f"{m:>8s}" for m in METRICS) + "   | minus LA: " +
          " ".join(f"{m:>8s}" for m in METRICS))
    for n, row in s["rows"].items():
        mean = " ".join(f"{row['mean'][m] * (1 if m == 'num_zero' else 100):8.2f}" for m in METRICS)
        diff = " ".join(f"{row['minus_LA_mean'][m] * (1 if m == 'num_zero' else 100):+8.2f}" for m in METRICS)
        print(f"{n:22s} {mean}   |            {diff}")
    for n, row in s["rows"].items():
        print(n, {model: {m: round(v * (1 if m == 'num_zero' else 100), 2) for m, v in d.items() if m in ('am', 'hm', 'gm', 'num_zero')}
                  for model, d in row["minus_LA_per_model"].items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--report", action="store_true", help="only summarise the dev_<model>.json files")
    args = parser.parse_args(argv)
    command = ["python", "experiments/cifar100_logits_dev.py", *(argv if argv is not None else sys.argv[1:])]
    if not args.report:
        for model in args.models:
            result = run_model(model, args.data, args.seeds, command)
            write_json(OUT / f"dev_{model}.json", result)
    results = {m: read_json(OUT / f"dev_{m}.json") for m in MODELS if (OUT / f"dev_{m}.json").exists()}
    s = summary(results, command)
    write_json(OUT / "dev_summary.json", s)
    print_summary(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
