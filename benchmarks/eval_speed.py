"""Evaluation speed: nolb's recall report with 1,000 bootstrap resamples vs scikit-learn + imbalanced-learn.

50,000 predictions over 1,000 classes (ImageNet-LT's test set: 50 images per class), with a
per-class recall that falls along a long-tailed training profile.  Variants, measured
interleaved ``--repeats`` times in one process (medians reported):

* ``nolb_bootstrap``: ``nolb.metrics.recall_report(..., train_counts, bootstrap=1000)``:
  per-class recall, AM/GM/HM, lowest, #zero, Many/Medium/Few and 95% intervals;
* ``nolb_point``: the same report without intervals (``bootstrap=0``);
* ``sklearn_point``: ``recall_score(average=None)``, ``balanced_accuracy_score`` and
  imbalanced-learn's ``geometric_mean_score(average="multiclass", correction=1e-3)``, HM
  and the lowest recall from the per-class recalls (point values only, no intervals);
* ``sklearn_bootstrap_naive`` (extrapolated): what intervals cost the usual way, resampling
  the 50,000 predictions per class and re-running ``recall_score`` for each resample;
  timed on ``--naive-resamples`` resamples and scaled to 1,000 (marked as extrapolated).

Peak memory of each variant: the tracemalloc peak (numpy's allocations are traced) in a
separate, untimed pass.

    python benchmarks/eval_speed.py --out benchmarks/results/eval_speed.json
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def make_predictions(n: int, classes: int, seed: int = 0):
    """(y_true, y_pred, train_counts): balanced test labels, predictions whose recall follows the training counts."""
    rng = np.random.default_rng(seed)
    y_true = np.repeat(np.arange(classes), n // classes)
    y_true = np.concatenate([y_true, rng.integers(0, classes, n - len(y_true))])
    train_counts = np.maximum(5, np.floor(1280 * np.arange(1, classes + 1) ** -0.9)).astype(np.int64)
    recall = 0.15 + 0.75 * np.log(train_counts) / np.log(train_counts.max())  # tail ~0.35, head ~0.9
    correct = rng.random(n) < recall[y_true]
    wrong = (y_true + rng.integers(1, classes, n)) % classes
    y_pred = np.where(correct, y_true, wrong)
    return y_true.astype(np.int64), y_pred.astype(np.int64), train_counts


def nolb_report(y_true, y_pred, counts, classes: int, bootstrap: int):
    from nolb.metrics import recall_report

    r = recall_report(y_true, y_pred, num_classes=classes, train_counts=counts, bootstrap=bootstrap, seed=0)
    return {"am": r.am, "gm": r.gm, "hm": r.hm, "lowest": r.lowest, "accuracy": r.accuracy,
            "intervals": {k: list(v) for k, v in r.intervals.items()}}


def sklearn_point(y_true, y_pred, classes: int):
    from imblearn.metrics import geometric_mean_score
    from sklearn.metrics import balanced_accuracy_score, recall_score

    labels = np.arange(classes)
    per_class = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    am = balanced_accuracy_score(y_true, y_pred)
    gm = geometric_mean_score(y_true, y_pred, labels=labels, average="multiclass", correction=1e-3)
    hm = classes / np.sum(1.0 / np.maximum(per_class, 1e-3))
    return {"am": float(am), "gm": float(gm), "hm": float(hm), "lowest": float(per_class.min()),
            "accuracy": float(np.mean(y_true == y_pred))}


def sklearn_bootstrap_naive(y_true, y_pred, classes: int, resamples: int, seed: int = 0):
    """Stratified resampling of the predictions + recall_score per resample (the usual way)."""
    from sklearn.metrics import recall_score

    rng = np.random.default_rng(seed)
    labels = np.arange(classes)
    by_class = [np.flatnonzero(y_true == c) for c in labels]
    hms = []
    for _ in range(resamples):
        index = np.concatenate([idx[rng.integers(0, len(idx), len(idx))] for idx in by_class])
        per_class = recall_score(y_true[index], y_pred[index], labels=labels, average=None, zero_division=0)
        hms.append(classes / np.sum(1.0 / np.maximum(per_class, 1e-3)))
    return np.percentile(hms, [2.5, 97.5]).tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--naive-resamples", type=int, default=20,
                        help="resamples actually run for the naive sklearn bootstrap (scaled to --bootstrap)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    y_true, y_pred, counts = make_predictions(args.predictions, args.classes)
    c = args.classes
    variants = {
        "nolb_bootstrap": lambda: nolb_report(y_true, y_pred, counts, c, args.bootstrap),
        "nolb_point": lambda: nolb_report(y_true, y_pred, counts, c, 0),
        "sklearn_point": lambda: sklearn_point(y_true, y_pred, c),
    }
    for fn in variants.values():  # warm-up: imports, first calls
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    values = {}
    for _ in range(args.repeats):
        for name, fn in variants.items():
            values[name], seconds = common.timed(fn)
            times[name].append(seconds)
    naive_run = max(1, args.naive_resamples)
    _, naive_s = common.timed(lambda: sklearn_bootstrap_naive(y_true, y_pred, c, naive_run))
    naive_extrapolated = naive_s * args.bootstrap / naive_run
    memory = {}
    for name, fn in [*variants.items(), ("sklearn_bootstrap_naive",
                                         lambda: sklearn_bootstrap_naive(y_true, y_pred, c, min(naive_run, 5)))]:
        tracemalloc.start()
        fn()
        memory[name] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    results = {name: {"seconds": common.summary(t), "peak_traced_mib": memory[name]} for name, t in times.items()}
    results["sklearn_bootstrap_naive"] = {"seconds_measured": naive_s, "resamples_run": naive_run,
                                          "seconds_extrapolated": naive_extrapolated, "extrapolated": True,
                                          "peak_traced_mib": memory["sklearn_bootstrap_naive"]}
    med = {k: v["seconds"]["median"] for k, v in results.items() if "seconds" in v}
    ratios = {
        "nolb_bootstrap_over_sklearn_point": med["nolb_bootstrap"] / med["sklearn_point"],
        "sklearn_point_over_nolb_point": med["sklearn_point"] / med["nolb_point"],
        "naive_bootstrap_over_nolb_bootstrap": naive_extrapolated / med["nolb_bootstrap"],
    }
    agree = {k: abs(values["nolb_point"][k] - values["sklearn_point"][k]) for k in ("am", "gm", "hm", "lowest", "accuracy")}
    print(f"recall report, {args.predictions} predictions, {c} classes, median of {args.repeats} interleaved runs")
    for name, r in results.items():
        s = r["seconds"]["median"] if "seconds" in r else r["seconds_extrapolated"]
        extra = " (extrapolated)" if "seconds" not in r else ""
        print(f"  {name:<26} {s * 1e3:10.1f} ms{extra}   peak traced {r['peak_traced_mib']:7.1f} MiB")
    for name, value in ratios.items():
        print(f"  {name:<38} {value:8.2f}")
    print(f"  max |nolb - sklearn| over am/gm/hm/lowest/accuracy: {max(agree.values()):.2e}")
    common.write_result(args.out, {"benchmark": "eval_speed", "predictions": args.predictions, "classes": c,
                                   "bootstrap": args.bootstrap, "results": results, "ratios": ratios,
                                   "point_value_abs_difference": agree, "nolb_values": values["nolb_bootstrap"],
                                   "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                                   "provenance": common.provenance()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
