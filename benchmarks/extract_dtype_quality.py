"""Stage-2 extraction in bf16 vs float32: speed, feature difference and head quality on CIFAR-10-LT.

For each augmentation seed, the training views of CIFAR-10-LT IR 100 (real images via
nolb.data) are extracted by the frozen ResNet-32 backbone (the shared akamaster CIFAR-10
weights: a speed and agreement check, not a reproduction) once in float32 and once under
bf16 autocast (``FeatureSource(extract_dtype=...)``, the pipeline's path: channels-last,
CPU chunks, float16 storage), interleaved; each feature set trains the same GML head (the
CIFAR recipe: 10 epochs, batch 128, lr 0.02, wd 2e-4, instance sampler, original init).
Validation features are exact float32 in both arms (as in the pipeline).  The decision
is taken on validation HM (95% stratified bootstrap intervals); test HM is reported for
agreement only.  Extraction is timed in CPU seconds of this process (``time.process_time``),
so a loaded machine shifts both arms alike.

    python benchmarks/extract_dtype_quality.py --seeds 0,1 --out benchmarks/results/extract_dtype_quality.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from retrain_speed import cifar_data_and_backbone, hm_with_interval  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import torch

    from nolb.retrain import FeatureSource, HeadSettings, train_on_source
    from nolb.retrain.inference import cpu_has_native_bf16

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--synthetic", action="store_true", help="random tiny data and backbone (smoke test)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    data, model, _ = cifar_data_and_backbone(args.synthetic)
    counts = data.class_counts.numpy()
    plain = FeatureSource(model, data, views=1, extract_dtype="float32")
    val, test = plain.split("val"), plain.split("test")
    rows, diffs = [], []
    for seed in args.seeds:
        settings = HeadSettings(method="gml", prior_strength=1.0, lr=0.02, epochs=args.epochs, batch_size=128,
                                weight_decay=2e-4, sampler="instance", init="original", seed=seed)
        features = {}
        for dtype in ("float32", "bfloat16"):
            source = FeatureSource(model, data, views=1, seed=seed, extract_dtype=dtype)
            start = time.process_time()
            train = source.split("train")
            cpu = time.process_time() - start
            source.remember("val", val, reused=True)
            head = train_on_source(source, settings).head
            features[dtype] = train.features.float()
            row = {"seed": seed, "extract_dtype": dtype, "extract_cpu_seconds": cpu,
                   "images_per_cpu_second": train.num_images / cpu,
                   "val": hm_with_interval(head, val, counts, data.num_classes, args.bootstrap),
                   "test": hm_with_interval(head, test, counts, data.num_classes, args.bootstrap)}
            rows.append(row)
            print(f"seed {seed} {dtype:8s} extract {cpu:6.1f} CPU-s  val HM {row['val']['hm']:.4f} "
                  f"{[round(v, 4) for v in row['val']['hm_interval']]}  test HM {row['test']['hm']:.4f}", flush=True)
        diff = (features["bfloat16"] - features["float32"]).abs()
        diffs.append({"seed": seed, "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
                      "max_abs_feature": float(features["float32"].abs().max())})
        print(f"seed {seed}: bf16 - fp32 features max |diff| {diffs[-1]['max_abs']:.4f} "
              f"(mean {diffs[-1]['mean_abs']:.5f}, largest feature {diffs[-1]['max_abs_feature']:.2f})", flush=True)
    result = {"benchmark": "extract_dtype_quality", "data": "synthetic" if args.synthetic else "CIFAR-10-LT IR 100",
              "native_bf16": cpu_has_native_bf16(), "train_images": len(data.train), "val_images": len(data.val),
              "rows": rows, "feature_difference": diffs, "torch_threads": torch.get_num_threads(),
              "peak_rss_mib": common.peak_rss_mib(), "provenance": common.provenance()}
    common.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
