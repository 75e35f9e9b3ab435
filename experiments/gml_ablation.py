"""GML ablations and what the ensemble's temperatures do, on one frozen backbone (issue 20).

    nice -n 10 python experiments/gml_ablation.py run      # stage 1 + heads + JSON (a few CPU minutes)
    python experiments/gml_ablation.py doc                 # regenerate the docs/QUALITY.md section

Data: Digits-LT (scikit-learn's 8x8 digits, IR 20: 100..5 training images per class; a fixed
balanced validation split of 20 images per class and a disjoint balanced test split of 50;
Fashion-MNIST is used instead when /usr/share/datasets/fashion-mnist exists, IR 100).
Stage 1: the packaged recipe with plain CE, one seed.  Stage 2: every row trains a new
linear head from the original one on the same cached features (4 augmented views) with the
same budget: lr in {0.02, 0.1} x 10 epochs, the lr and the epoch chosen on validation by
(HM, AM).  Rows: the paper GML (tau = 1, mean-then-log, power 1, instance sampling), then
one change each: log-then-mean, no prior (tau = 0), power 0.5, power 2, class-balanced
sampling.  Stage 3: the original head + the paper GML head over a (T1, T2) grid, choices
on validation by three rules, plus post-hoc temperature scaling of each head (T fitted on
validation NLL).  The test split is read once, at the end, to measure.

Results: results/ablation/gml_ablation.json (+ the plots next to it); the doc section is
generated from that JSON only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "ablation"
RESULT = OUT / "gml_ablation.json"
QUALITY = REPO / "docs" / "QUALITY.md"
SECTION = "## GML ablations and calibration"
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
LRS = (0.02, 0.1)
EPOCHS = 10
GRID = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
ECE_BOUND = 0.05  # fixed before looking at any result: "HM among pairs with validation ECE <= 5 %"
BOOTSTRAP = 1000
VAL_PER_CLASS = 100
VARIANTS = {
    "GML (paper)": {},
    "log-then-mean": {"aggregate": "log_then_mean"},
    "no prior (tau = 0)": {"prior_strength": 0.0},
    "power 0.5": {"power": 0.5},
    "power 2": {"power": 2.0},
    "class-balanced sampling": {"sampler": "class_balanced"},
}


def dataset_choice() -> tuple[str, list[str]]:
    """The dataset and the stage-1 settings of the committed results (pinned: the recipes have changed since)."""
    if FASHION_ROOT.is_dir():
        return "fashion_mnist_lt", ["data.imbalance_ratio=100", "train.epochs=4", "model.options={width: 32, depth: 1}",
                                    "train.precision=fp32"]
    return "digits_lt", ["train.epochs=30"]


def honest_split(data, per_class: int = VAL_PER_CLASS, seed: int = 1):
    """Validation = a seeded, stratified slice of the official test set; the reported test = the rest.

    The recipe's own validation split borrows training images of the head class (it has no
    unused ones at IR 100), which METHOD.md section 7 forbids; this split does not.
    """
    import dataclasses

    import numpy as np

    from nolb.data.tensor_dataset import TensorImageDataset

    labels = data.test.labels.numpy()
    rng = np.random.default_rng(seed)
    val_idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                      for c in range(data.num_classes)]))
    rest = np.setdiff1d(np.arange(labels.shape[0]), val_idx)
    names = data.class_names
    val = TensorImageDataset(data.test.images[val_idx], data.test.labels[val_idx], names)
    test = TensorImageDataset(data.test.images[rest], data.test.labels[rest], names)
    info = {"val": f"{per_class} per class from the official test set (seed {seed})",
            "test": f"the other {rest.shape[0]} official test images", "val_images": int(val_idx.shape[0]),
            "test_images": int(rest.shape[0]), "train": "the LT training subsample (no image in two roles)"}
    return dataclasses.replace(data, val=val, test=test), info


def cmd_run(args: argparse.Namespace) -> None:
    import torch

    from nolb.config import load_config
    from nolb.engine import load_trained, train
    from nolb.losses import GeometricMeanLoss
    from nolb.metrics import recall_report
    from nolb.metrics.ensemble_analysis import write_ensemble_analysis
    from nolb.metrics.temperature_map import ensemble_probabilities, select_point
    from nolb.provenance import git_commit
    from nolb.retrain.feature_source import FeatureSource
    from nolb.retrain.head_training import fit_head, linear_head_from
    from nolb.retrain.scoring import head_logits, validation_score

    torch.set_num_threads(1)
    started = time.perf_counter()
    recipe, overrides = dataset_choice()
    overrides += [f"train.seed={args.seed}", "train.progress=false"]
    config = load_config(recipe, overrides)
    run_dir = REPO / "runs" / "ablation" / f"{recipe}_s{args.seed}"
    if not (run_dir / "metrics.json").is_file():
        train(config, run_dir=run_dir, overwrite=True, quiet=True)
    model, _, data = load_trained(run_dir)
    data, split_info = honest_split(data)
    source = FeatureSource(model, data, views=4, cache_dir=run_dir / "retrain" / "features_honest", batch_size=500, seed=0)
    tr, val = source.split("train"), source.split("val")
    counts, num_classes = source.class_counts, source.num_classes

    def val_key(module):
        score = validation_score(head_logits(module, val.features), val.labels, num_classes)
        return (score.hm, score.am)

    heads, selection = {}, {}
    for label, change in VARIANTS.items():
        loss_options = {k: v for k, v in change.items() if k != "sampler"}
        best = None
        for lr in LRS:
            head = linear_head_from(source.original_head, tr.features.shape[1], num_classes, "original", seed=0)
            fit = fit_head(head, tr.features, tr.labels, GeometricMeanLoss(counts, **loss_options),
                           num_classes=num_classes, epochs=EPOCHS, batch_size=128, lr=lr, weight_decay=2e-4,
                           sampler=change.get("sampler", "instance"), draws_per_epoch=tr.num_images, seed=0,
                           evaluate=val_key)
            if best is None or fit.best_score > best[0]:
                best = (fit.best_score, fit.module, {"lr": lr, "epoch": fit.best_epoch,
                                                     "val_hm": fit.best_score[0], "val_am": fit.best_score[1]})
        heads[label], selection[label] = best[1], best[2]
        print(f"{label}: chosen on val {best[2]}", flush=True)

    test = source.split("test")  # the only read of the test split
    y_test = test.labels.numpy()
    original_test = head_logits(source.original_head, test.features).numpy()
    options = dict(num_classes=num_classes, train_counts=counts.numpy(), bootstrap=BOOTSTRAP, seed=0, calibration="logits")
    rows = {"base (original head)": recall_report(y_test, original_test, **options)}
    for label, head in heads.items():
        rows[label] = recall_report(y_test, head_logits(head, test.features).numpy(), **options)

    # What the temperatures do: original head + paper GML head.
    paper = heads["GML (paper)"]
    val_pair = (head_logits(source.original_head, val.features), head_logits(paper, val.features), val.labels)
    test_pair = (torch.from_numpy(original_test), head_logits(paper, test.features), test.labels)
    analysis = write_ensemble_analysis(OUT, val=val_pair, test=test_pair, train_counts=counts.numpy(), grid=GRID,
                                       criterion="hm", bootstrap=BOOTSTRAP)
    temperature_rows = {}
    for label, report in analysis.rows.items():
        temperature_rows[label] = {"choice": "fixed" if "T1=T2=1" in label or label.endswith("head") else "val",
                                   **_row(report)}
    for criterion, bound in (("hm_ece", ECE_BOUND), ("nll", None)):
        choice = select_point(analysis.grid, criterion, bound)
        log_p = ensemble_probabilities(test_pair[0], test_pair[1], choice.t1, choice.t2)[1]
        label = f"ensemble T1={choice.t1:g}, T2={choice.t2:g} ({criterion}{'' if bound is None else f' <= {bound:g}'})"
        temperature_rows[label] = {"choice": "val", "note": choice.note, **_row(recall_report(y_test, log_p, **options))}

    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _commit_text(git_commit()),
        "seed": args.seed,
        "dataset": recipe,
        "stage1_overrides": overrides,
        "split": split_info,
        "data_info": {k: v for k, v in dict(getattr(data, "info", {}) or {}).items() if isinstance(v, (int, float, str))},
        "class_counts": counts.tolist(),
        "selection": {"lrs": list(LRS), "epochs": EPOCHS, "rule": "lr and epoch maximising validation (HM, AM)",
                      "chosen": selection},
        "bootstrap": BOOTSTRAP,
        "rows": {label: _row(report) for label, report in rows.items()},
        "temperatures": {"grid": list(GRID), "ece_bound": ECE_BOUND, "scaling": analysis.scaling,
                         "map_choice_hm": analysis.choice.to_dict(), "rows": temperature_rows},
        "seconds": round(time.perf_counter() - started, 1),
    }
    from nolb.io import write_json

    write_json(RESULT, record)
    print(f"wrote {RESULT.relative_to(REPO)} ({record['seconds']} s)")
    cmd_doc(args)


def _commit_text(commit) -> str:
    if isinstance(commit, dict):
        return str(commit.get("commit")) + (" (dirty)" if commit.get("dirty") else "")
    return str(commit)


def _row(report) -> dict:
    data = report.to_dict()
    keys = ("accuracy", "am", "hm", "gm", "lowest", "num_zero", "many", "medium", "few",
            "ece", "classwise_ece", "nll", "brier", "intervals")
    bins = data["calibration"]["reliability"]
    confidence = sum(c * (m or 0.0) for c, m in zip(bins["counts"], bins["confidence"])) / sum(bins["counts"])
    return {**{k: data.get(k) for k in keys}, "calibration_groups": data["calibration"]["groups"],
            "mean_confidence": confidence, "overconfidence": confidence - data["accuracy"]}


def _pct(value, interval=None) -> str:
    if value is None:
        return "n/a"
    text = f"{100 * value:.1f}"
    return text + (f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else "")


def _num(value, interval=None) -> str:
    text = f"{value:.3f}"
    return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def tail_group(rows: dict) -> str:
    """The group of the rarest classes that has members ("few", else "medium")."""
    first = next(iter(rows.values()))
    return next(g for g in ("few", "medium", "many") if first.get(g) is not None)


def _table(rows: dict, extra: dict | None = None) -> list[str]:
    tail = tail_group(rows)
    head = ["Row", "HM", "Lowest", "AM", f"{tail.capitalize()} recall", "ECE", f"{tail.capitalize()} ECE", "NLL"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for label, row in rows.items():
        iv = row["intervals"]
        group = row["calibration_groups"].get(tail) or {}
        cells = [label + (f" ({extra[label]})" if extra and label in extra else ""),
                 _pct(row["hm"], iv.get("hm")), _pct(row["lowest"], iv.get("lowest")), _pct(row["am"], iv.get("am")),
                 _pct(row[tail]), _pct(row["ece"], iv.get("ece")), _pct(group.get("ece")), _num(row["nll"], iv.get("nll"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cmd_doc(args: argparse.Namespace) -> None:
    from nolb.io import write_text

    record = json.loads(RESULT.read_text())
    chosen = record["selection"]["chosen"]
    extra = {label: f"lr {c['lr']}, ep {c['epoch']}" for label, c in chosen.items()}
    temps = record["temperatures"]
    rows = record["rows"]
    paper, base = rows["GML (paper)"], rows["base (original head)"]
    t_rows = temps["rows"]
    ens11 = next(v for k, v in t_rows.items() if "T1=T2=1" in k)
    ens_hm = next(v for k, v in t_rows.items() if k.endswith("(hm)"))
    hm_label = next(k for k in t_rows if k.endswith("(hm)"))
    hm_choice = temps["map_choice_hm"]
    scaled = {k: v for k, v in t_rows.items() if "(val NLL)" in k}
    lines = [
        SECTION,
        "",
        f"Generated by `python experiments/gml_ablation.py doc` from `results/ablation/gml_ablation.json` "
        f"(made by `{record['command']}`, commit `{record['commit']}`, seed {record['seed']}, "
        f"{record['seconds']} s on a shared 2-core CPU). Data: **{record['dataset']}**"
        + (" (Fashion-MNIST-LT, IR 100" if record["dataset"] == "fashion_mnist_lt" else " (scikit-learn's Digits-LT")
        + f", {record['class_counts'][0]}..{record['class_counts'][-1]} training images per class); "
        f"validation: {record['split']['val']}; reported test: {record['split']['test']}; training: "
        f"{record['split']['train']}. Stage 1: one short run of the packaged recipe with plain CE "
        f"({', '.join(record['stage1_overrides'])}; its checkpoint is the last epoch, so it selected nothing). "
        "Every row re-trains a linear head from the original one on the same cached features (4 augmented "
        f"views) with the same budget: lr in {record['selection']['lrs']} x {record['selection']['epochs']} "
        "epochs, lr and epoch chosen on validation by (HM, AM). Test values in percent with 95% stratified "
        f"bootstrap intervals (B = {record['bootstrap']}); ECE: top-label, 15 bins; NLL in nats; "
        f"{tail_group(rows).capitalize()}: the group of the rarest classes (Many > 100, Medium 20-100, Few < 20 "
        "training images), its mean recall and the ECE over its test images.",
        "",
        *_table(rows, extra),
        "",
        _verdicts(rows),
        "",
        "### What the temperatures do (original head + paper GML head)",
        "",
        *_table(t_rows),
        "",
        "Measured on this backbone (all choices on validation; the test rows only measure): "
        + _temperature_text(temps, t_rows, ens11, ens_hm, hm_label, hm_choice, scaled, base, paper),
        "",
        "Plots (same run): `results/ablation/temperature_map.png` (validation HM, lowest recall, AM and ECE over "
        "the grid, the HM choice boxed, T1 = T2 = 1 circled, the test values at the choice in the caption), "
        "`results/ablation/reliability.png`, `results/ablation/recall_distribution.png`.",
        "",
    ]
    text = QUALITY.read_text() if QUALITY.exists() else ""
    if SECTION in text:
        start = text.index(SECTION)
        rest = text[start + len(SECTION):]
        following = rest.find("\n## ")
        tail = "" if following < 0 else rest[following + 1:]
        text = text[:start] + "\n".join(lines) + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    write_text(QUALITY, text)
    print(f"updated {QUALITY.relative_to(REPO)}: section {SECTION!r}")


def _verdicts(rows: dict) -> str:
    """Which variants differ from the paper GML with non-overlapping 95% intervals (HM, lowest, ECE, NLL)."""
    paper = rows["GML (paper)"]
    found = []
    for label, row in rows.items():
        if label in ("GML (paper)", "base (original head)"):
            continue
        for key, better_high in (("hm", True), ("lowest", True), ("ece", False), ("nll", False)):
            low, high = row["intervals"][key]
            p_low, p_high = paper["intervals"][key]
            if low > p_high or high < p_low:
                up = low > p_high
                verdict = "better" if up == better_high else "worse"
                found.append(f"{label}: {key.upper() if key != 'lowest' else 'lowest'} {verdict}")
    summary = "; ".join(found) if found else "none"
    return ("Against the paper GML, with non-overlapping 95% intervals (anything else is a tie on this one "
            f"backbone): {summary}.")


def _signed(row: dict) -> str:
    gap = 100 * row["overconfidence"]
    return f"mean confidence {abs(gap):.1f} points {'above' if gap > 0 else 'below'} accuracy"


def _temperature_text(temps, t_rows, ens11, ens_hm, hm_label, hm_choice, scaled, base, paper) -> str:
    t1, t2 = hm_choice["t1"], hm_choice["t2"]
    weight = ("gives the re-trained (GML) head more say (a larger T flattens a head's softmax, so it counts "
              "less in the average)" if t1 / t2 > 1 else
              "gives the original head more say (a larger T flattens a head's softmax, so it counts less in "
              "the average)" if t1 / t2 < 1 else "keeps both heads' weights equal")
    parts = [
        f"the map over {temps['grid']} chose T1 = {t1:g}, T2 = {t2:g} by validation HM"
        + (" (at the grid's edge)" if max(t1, t2) == max(temps["grid"]) or min(t1, t2) == min(temps["grid"]) else "")
        + f", which {weight}. "
        f"On test, T1 = T2 = 1 gives HM {_pct(ens11['hm'])}, lowest {_pct(ens11['lowest'])}, ECE "
        f"{_pct(ens11['ece'])} ({_signed(ens11)}); the HM choice gives HM {_pct(ens_hm['hm'])}, lowest "
        f"{_pct(ens_hm['lowest'])}, ECE {_pct(ens_hm['ece'])} ({_signed(ens_hm)}).",
    ]
    for label, row in t_rows.items():
        if "(hm_ece" in label:
            parts.append(f"Bounding validation ECE by {100 * temps['ece_bound']:g}% moves the choice to "
                         f"{label.split('(')[0].replace('ensemble ', '').strip()}: test HM {_pct(row['hm'])}, "
                         f"ECE {_pct(row['ece'])}" + (f" ({row['note']})" if row.get("note") else "") + ".")
        if "(nll)" in label:
            parts.append(f"The NLL-optimal pair ({label.split('(')[0].replace('ensemble ', '').strip()}) gives "
                         f"test HM {_pct(row['hm'])}, NLL {row['nll']:.3f}.")
    parts.append(
        f"Post-hoc temperature scaling (one T per head on validation NLL: original {temps['scaling']['original']:.2f}, "
        f"GML head {temps['scaling']['retrained']:.2f}) changes no prediction, so HM and the lowest recall stay the "
        "head's; it moves the ECE: " + "; ".join(f"{k} {_pct(v['ece'])} (NLL {v['nll']:.3f})" for k, v in scaled.items())
        + f", against {_pct(base['ece'])} for the original head ({_signed(base)}) and {_pct(paper['ece'])} for the "
        f"paper GML head ({_signed(paper)}).")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="stage 1 (if needed), the heads, the JSON and the doc section")
    run.add_argument("--seed", type=int, default=0)
    run.set_defaults(func=cmd_run)
    sub.add_parser("doc", help="regenerate the docs/QUALITY.md section from the JSON").set_defaults(func=cmd_doc)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args.func(args)


if __name__ == "__main__":
    main()
