"""Many-class evidence for GML (issue 17): heads on the outputs of three real CIFAR-100-LT models.

    python experiments/cifar100_logits_study.py            # all three models -> JSON + docs section
    python experiments/cifar100_logits_study.py --report   # only rebuild the docs section from the JSON

Data: /work/shared/data/cifar100lt-logits (or --data): train / val_lt / test_lt outputs
(100 logits per image) of ResNet-32 models trained with CE, Balanced Softmax and logit
adjustment.  The logits are the features.  Roles (no image in two):

* fitting: the ``train`` outputs (images the model was trained on), or, for the
  "held-out" rows, the ``val_lt`` outputs (images the model never saw);
* selection: ``val_lt`` (taus, GML settings and epochs); the held-out rows use a fixed
  recipe and select nothing, because their fitting data is the validation split;
* reported test: the distinct ``test_lt`` images that are not in ``val_lt``
  (``cifar_index``; 3,261 images, 4 to 100 per class).  Nothing is chosen on them.

Writes one JSON per model under results/cifar100lt_logits/ (command, commit, rows with
95% stratified bootstrap intervals, paired differences) and the section "Many classes:
CIFAR-100-LT model outputs" at the end of docs/QUALITY.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from nolb.estimators import LinearHeadClassifier, LogitAdjustedClassifier  # noqa: E402
from nolb.estimators.linear_head import GMLClassifier  # noqa: E402
from nolb.io import read_json, write_json, write_text  # noqa: E402
from nolb.metrics import recall_report  # noqa: E402
from nolb.metrics.recall import harmonic_mean  # noqa: E402
from nolb.provenance import git_commit  # noqa: E402

DATA = Path("/work/shared/data/cifar100lt-logits")
OUT = REPO / "results" / "cifar100lt_logits"
DOC = REPO / "docs" / "QUALITY.md"
MODELS = {"ce": "CE", "balsoftmax": "Balanced Softmax", "logitadjust": "Logit adjustment"}
HEADING = "## Many classes: CIFAR-100-LT model outputs"
BOOTSTRAP, SEED = 1000, 0
PAPER = dict(lr=0.02, epochs=10, batch_size=128, weight_decay=2e-4, sampler="instance")  # METHOD.md section 4


def load(folder: Path, model: str, split: str) -> dict:
    with np.load(folder / f"{model}_{split}.npz") as z:
        return {key: z[key] for key in z.files}


def test_rows(test: dict, val: dict) -> np.ndarray:
    """Indices of the distinct test images that are not in val_lt."""
    keep = np.flatnonzero(~np.isin(test["cifar_index"], val["cifar_index"]))
    _, first = np.unique(test["cifar_index"][keep], return_index=True)
    return np.sort(keep[first])


def candidates(train: dict, val: dict) -> dict:
    """Every row's fitted predictor: name -> (description, fitted estimator on logits)."""
    X, y, Xv, yv = train["logits"], train["labels"], val["logits"], val["labels"]
    counts = train["train_counts"]
    rows = {}
    rows["base"] = ("the model's own logits", LogitAdjustedClassifier("scores", tau=0.0).fit(X, y))
    rows["post-hoc LA"] = ("logits - tau log prior, tau in 0..2 chosen on val_lt (HM, then AM)",
                           LogitAdjustedClassifier("scores", class_counts=counts).fit(X, y, X_val=Xv, y_val=yv))
    for method, label in (("gml", "GML head"), ("bsce", "BSCE head"), ("ce", "CE head")):
        rows[f"{label} (train outputs)"] = (
            f"{method} head started from the model (identity), stage 2's paper recipe (tau 1, lr 0.02, 10 epochs, "
            "instance), fitted on train outputs",
            LinearHeadClassifier(method=method, prior_strength=1.0, class_counts=counts, init_coef="identity",
                                 **PAPER).fit(X, y))
    rows["cRT (train outputs)"] = ("fresh head (as in cRT), CE, class-balanced sampling, lr 0.02, 10 epochs, train outputs",
                                   LinearHeadClassifier(method="crt", class_counts=counts,
                                                        **{**PAPER, "sampler": "class_balanced"}).fit(X, y))
    rows["nolb default: GMLClassifier()"] = (
        "GMLClassifier() defaults: init_coef='auto' (here the identity: 100 columns = 100 classes), fit on train "
        "outputs, tau/lr/sampler/epoch chosen on val_lt (stage 2's rule)",
        GMLClassifier(class_counts=counts).fit(X, y, X_val=Xv, y_val=yv))
    rows["GMLClassifier(init_coef='fresh')"] = (
        "as the default, but a fresh head (the default before experiments/cifar100_logits_dev.py)",
        GMLClassifier(class_counts=counts, init_coef="fresh").fit(X, y, X_val=Xv, y_val=yv))
    for method, label in (("gml", "GML head"), ("bsce", "BSCE head"), ("ce", "CE head")):
        rows[f"{label} (held-out val_lt outputs)"] = (
            f"{method} head started from the model (identity), paper recipe, fitted on all val_lt outputs "
            "(prior: training counts), nothing selected",
            LinearHeadClassifier(method=method, prior_strength=1.0, class_counts=counts, init_coef="identity",
                                 **PAPER).fit(Xv, yv))
    return rows


def zero_interval(report, rng: np.random.Generator) -> list[float]:
    """95% stratified-bootstrap interval of the number of zero-recall classes
    (class c's correct count in a resample is Binomial(n_c, R_c), as in nolb.metrics)."""
    n = np.asarray(report.test_counts)
    correct = rng.binomial(n[None, :], np.asarray(report.per_class)[None, :], size=(BOOTSTRAP, n.size))
    zeros = (correct == 0).sum(1)
    return [float(np.percentile(zeros, 2.5)), float(np.percentile(zeros, 97.5))]


def paired_difference(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, rng: np.random.Generator) -> dict:
    """a - b for AM, HM and #zero: the point value and a 95% interval from one stratified
    bootstrap over test images that resamples the same images for both."""
    classes = np.unique(y)
    members = [np.flatnonzero(y == c) for c in classes]

    def scores(pred, index):
        recall = np.array([np.mean(pred[i] == c) for c, i in zip(classes, index)])
        return np.array([recall.mean(), harmonic_mean(recall, 1e-3), (recall == 0).sum()])

    point = scores(pred_a, members) - scores(pred_b, members)
    draws = []
    for _ in range(BOOTSTRAP):
        index = [rng.choice(m, m.size) for m in members]
        draws.append(scores(pred_a, index) - scores(pred_b, index))
    low, high = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
    return {name: {"value": float(point[k]), "interval": [float(low[k]), float(high[k])]}
            for k, name in enumerate(("am", "hm", "num_zero"))}


def study(model: str, folder: Path, command: list[str]) -> dict:
    started = time.perf_counter()
    train, val, test = (load(folder, model, s) for s in ("train", "val_lt", "test_lt"))
    rows_index = test_rows(test, val)
    Xt, yt = test["logits"][rows_index], test["labels"][rows_index]
    fitted = candidates(train, val)
    rng = np.random.default_rng(SEED)
    rows, predictions = {}, {}
    for name, (how, estimator) in fitted.items():
        pred = estimator.predict(Xt)
        predictions[name] = pred
        report = recall_report(yt, pred, num_classes=100, train_counts=train["train_counts"], bootstrap=BOOTSTRAP,
                               seed=SEED)
        row = {"how": how, "report": report.to_dict(), "num_zero_interval": zero_interval(report, rng)}
        for attribute in ("tau_", "head_settings_", "best_epoch_", "val_score_"):
            if hasattr(estimator, attribute):
                row[attribute.rstrip("_")] = getattr(estimator, attribute)
        if getattr(estimator, "selection_table_", None):  # the val_lt scores the rule ranked
            row["val_selection_best"] = max(estimator.selection_table_,
                                            key=lambda r: (r["feasible"], r["rank_hm"], r["rank_am"]))
        rows[name] = row
    default = "nolb default: GMLClassifier()"
    differences = {f"{a} - {b}": paired_difference(yt, predictions[a], predictions[b], rng)
                   for a, b in ((default, "base"), (default, "post-hoc LA"),
                                ("GMLClassifier(init_coef='fresh')", "post-hoc LA"), ("post-hoc LA", "base"))}
    return {
        "command": command, "commit": git_commit(REPO), "seed": SEED, "model": model, "data": str(folder),
        "config": {"bootstrap": BOOTSTRAP, "paper_recipe": PAPER, "test_images": int(rows_index.size),
                   "test_rule": "distinct test_lt images (cifar_index) not in val_lt"},
        "rows": rows, "paired_differences": differences, "seconds": time.perf_counter() - started,
    }


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def cell(report: dict, key: str) -> str:
    low, high = report["intervals"][key]
    return f"{pct(report[key])} [{pct(low)}, {pct(high)}]"


def section(results: dict[str, dict]) -> str:
    lines = [HEADING, "",
             "Generated by `python experiments/cifar100_logits_study.py` from "
             "`results/cifar100lt_logits/*.json`; do not edit by hand.", "",
             "Three real CIFAR-100-LT (IF 100) ResNet-32 models (CE, Balanced Softmax, logit adjustment; "
             "`/work/shared/data/cifar100lt-logits`, read its README): their 100 logits are the features of "
             "a new linear head. The GML/BSCE/CE heads start from the model itself (identity weights: stage 2's "
             "`init=original`) and follow stage 2's paper recipe; `GMLClassifier()` also starts from the model (its "
             "default `init_coef=\"auto\"` starts from the identity when X reads as scores: one column per class whose arg-max predicts y; chosen on val_lt halves "
             "by `python experiments/cifar100_logits_dev.py`, results/cifar100lt_logits/dev_summary.json); cRT and "
             "`GMLClassifier(init_coef=\"fresh\")` start afresh. "
             "Fitting uses the `train` outputs (images the model was trained on) or, for "
             "the held-out rows, all `val_lt` outputs (images it never saw, with a fixed recipe and no "
             "selection); settings, taus and epochs are chosen on `val_lt`; the reported test set is the "
             f"{next(iter(results.values()))['config']['test_images']:,} distinct `test_lt` images that are "
             "not in `val_lt` (4 to 100 per class). Nothing is chosen on it. Percent, with 95% stratified "
             "bootstrap intervals over test images; HM and GM count a zero recall as 0.1%, and with 4 "
             "test images in the rarest classes HM and Lowest are mostly set by that floor. The intervals are "
             "percentile intervals of nolb's stratified bootstrap (a class's correct count is Binomial(n_c, R_c)); "
             "for HM and #zero, resamples push classes with a low recall to zero, so an interval can lie beside "
             "the point value: read them as the spread, and the paired differences for comparisons.", ""]
    for model, result in results.items():
        lines += [f"### {MODELS[model]} model", "",
                  "| Predictions | AM | HM | GM | Lowest | #zero | chosen on val_lt |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for name, row in result["rows"].items():
            r = row["report"]
            z = row["num_zero_interval"]
            chosen = ""
            if "tau" in row:
                chosen = f"tau {row['tau']:g}"
            if "head_settings" in row and name.startswith(("nolb", "GMLClassifier")):
                s = row["head_settings"]
                chosen = f"tau {s['prior_strength']:g}, lr {s['lr']:g}, {s['sampler']}, epoch {row['best_epoch']}"
                if "val_selection_best" in row:
                    best = row["val_selection_best"]
                    chosen += (f" (val_lt soft HM {best.get('rank_hm', best.get('soft_hm')):.3f}, "
                               f"soft AM {best.get('rank_am', best.get('soft_am')):.3f}, HM {pct(best['hm'])})")
            lines.append(f"| {name} | {cell(r, 'am')} | {cell(r, 'hm')} | {cell(r, 'gm')} | {cell(r, 'lowest')} | "
                         f"{r['num_zero']} [{z[0]:.0f}, {z[1]:.0f}] | {chosen} |")
        lines += ["", "Paired differences (same bootstrap resamples for both rows; points, 95% interval):", ""]
        for pair, diff in result["paired_differences"].items():
            parts = [f"{key} {diff[key]['value'] * (1 if key == 'num_zero' else 100):+.1f} "
                     f"[{diff[key]['interval'][0] * (1 if key == 'num_zero' else 100):+.1f}, "
                     f"{diff[key]['interval'][1] * (1 if key == 'num_zero' else 100):+.1f}]"
                     for key in ("am", "hm", "num_zero")]
            lines.append(f"- {pair}: " + "; ".join(parts))
        lines.append("")
    lines += dev_section(OUT / "dev_summary.json")
    lines += [FINDINGS, ""]
    return "\n".join(lines)


def dev_section(path: Path) -> list[str]:
    """The table behind GMLClassifier's default start, from experiments/cifar100_logits_dev.py's summary."""
    if not path.exists():
        return []
    dev = read_json(path)
    lines = ["### How `GMLClassifier()`'s default start was chosen (val_lt halves, test_lt not read)", "",
             f"By `{' '.join(dev['command'])}` (commit {dev['commit']['commit'][:7]}{' + uncommitted edits' if dev['commit'].get('dirty') else ''}, seeds {dev['seeds']}; "
             "results/cifar100lt_logits/dev_*.json): val_lt split into stratified halves A/B by distinct image, "
             "heads fitted on the train outputs, settings chosen on A by each candidate's own rule, scored on B "
             "(one row per distinct image, the 92 classes with 2+ val_lt images). Rule fixed before the run: "
             f"{dev['rule']}. Winner: **{dev['winner']}**. Mean over 3 models x {len(dev['seeds'])} splits, "
             "percent; then the mean difference to post-hoc LA (tau chosen on A) per model.", "",
             "| Candidate (selection rule) | AM | HM | GM | #zero | - LA: CE AM / GM / #zero | BS AM / GM / #zero | "
             "LA-model AM / GM / #zero |", "|---|---:|---:|---:|---:|---|---|---|"]
    for name, row in dev["rows"].items():
        mean = row["mean"]
        cells = [f"{100 * mean['am']:.1f}", f"{100 * mean['hm']:.2f}", f"{100 * mean['gm']:.1f}",
                 f"{mean['num_zero']:.1f}"]
        for model in ("ce", "balsoftmax", "logitadjust"):
            d = row["minus_LA_per_model"][model]
            cells.append(f"{100 * d['am']:+.1f} / {100 * d['gm']:+.1f} / {d['num_zero']:+.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "`identity` is `init_coef=\"identity\"`, which `\"auto\"` (the default) is on these 100-column "
              "logits; `fresh` is the default before this study; `both` fits both starts and keeps the one its rule "
              "ranks higher on A. HM on B is mostly set by the 0.1% floor (1-3 B images in the tail classes).", ""]
    return lines


FINDINGS = "<!-- findings: results/cifar100lt_logits/FINDINGS.md, written by hand from the tables above -->"


def write_section(results: dict[str, dict]) -> None:
    text = DOC.read_text() if DOC.exists() else ""
    findings_file = OUT / "FINDINGS.md"
    body = section(results)
    if findings_file.exists():
        body = body.replace(FINDINGS, findings_file.read_text().rstrip())
    if HEADING not in text:
        write_text(DOC, text.rstrip() + "\n\n" + body.rstrip() + "\n")
        return
    head, rest = text.split(HEADING, 1)
    following = rest.find("\n## ")  # keep the sections other scripts generate after this one
    tail = "" if following < 0 else rest[following + 1:]
    write_text(DOC, head.rstrip() + "\n\n" + body.rstrip() + "\n" + ("\n" + tail if tail else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--report", action="store_true", help="only rebuild the docs section from the JSON files")
    args = parser.parse_args(argv)
    if not args.report:
        for model in args.models:
            result = study(model, args.data, ["python", "experiments/cifar100_logits_study.py", *(argv or sys.argv[1:])])
            write_json(OUT / f"{model}.json", result)
            print(f"{model}: {result['seconds']:.0f} s -> {OUT / f'{model}.json'}", flush=True)
    results = {m: read_json(OUT / f"{m}.json") for m in MODELS if (OUT / f"{m}.json").exists()}
    write_section(results)
    print(section(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
