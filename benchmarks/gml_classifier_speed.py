"""GMLClassifier.fit against stage 2's loop run directly, on head_training_speed's cases.

The estimator adds input checks, label encoding, counts and (by default) standardisation
around the very same loop (``fit_head`` through ``nolb.estimators._head_loop``); this
measures what that costs.  Same data, settings and seed for both; interleaved.

    python benchmarks/gml_classifier_speed.py --case imagenet --epochs 2          # 115,846 x 2,048, 1,000 classes
    python benchmarks/gml_classifier_speed.py --case imagenet --rows 20000 --epochs 1   # a scaled check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from head_training_speed import CASES, make_case  # noqa: E402

from nolb import GMLClassifier  # noqa: E402
from nolb.losses import build_loss  # noqa: E402
from nolb.retrain.head_training import fit_head, linear_head_from  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=list(CASES), default="imagenet")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, help="override the number of training rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = dict(CASES[args.case])
    if args.rows:
        spec["rows"] = args.rows
    features, labels, counts, *_ = make_case(spec)
    X, y = features.numpy(), labels.numpy()  # float16 rows, as cached by stage 2
    settings = dict(lr=spec["lr"], epochs=args.epochs, batch_size=spec["batch"], weight_decay=spec["wd"])
    print(f"{args.case}: {X.shape[0]} x {X.shape[1]} float16, {spec['classes']} classes, {args.epochs} epochs, "
          f"batch {spec['batch']}, {torch.get_num_threads()} threads", flush=True)

    def loop() -> float:
        start = time.perf_counter()
        head = linear_head_from(None, X.shape[1], spec["classes"], "fresh", seed=0)
        fit_head(head, features, labels, build_loss("gml", counts, prior_strength=1.0), num_classes=spec["classes"],
                 epochs=args.epochs, batch_size=spec["batch"], lr=spec["lr"], weight_decay=spec["wd"], seed=0,
                 draws_per_epoch=X.shape[0])
        return time.perf_counter() - start

    def estimator(standardize: bool) -> float:
        start = time.perf_counter()
        GMLClassifier(standardize=standardize, select=False, **settings).fit(X, y)
        return time.perf_counter() - start

    variants = {"fit_head directly": loop, "GMLClassifier(standardize=False)": lambda: estimator(False),
                "GMLClassifier() (standardize=True)": lambda: estimator(True)}
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            results[name].append(run())
            print(f"  {name:36s} {results[name][-1]:.1f} s", flush=True)
    base = min(results["fit_head directly"])
    summary = {name: {"seconds": min(times), "ratio_to_loop": min(times) / base} for name, times in results.items()}
    for name, row in summary.items():
        print(f"{name:36s} best {row['seconds']:.1f} s  x{row['ratio_to_loop']:.2f} of the loop", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "spec": spec, "results": summary}, indent=1))


if __name__ == "__main__":
    main()
