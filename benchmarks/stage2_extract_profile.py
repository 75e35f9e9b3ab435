"""Why extraction was slower than an online epoch, and the first-run ratio on a few images.

On ``--images`` CIFAR-10-LT IR 100 training images (real, via nolb.data; the shared
akamaster ResNet-32 backbone), interleaved ``--repeats`` times in one process, CPU seconds
of this process (``time.process_time``: a loaded machine shifts every variant alike):

* extraction of one view, as before issue 16's fix: the loader's whole batch (256 in
  benchmarks/retrain_speed.py, ``train.eval_batch_size`` = 500 in ``nolb run``) through the
  backbone in channels-last float32;
* extraction now: :class:`nolb.retrain.FeatureSource` ``.batches("train")`` (CPU chunks of
  64, channels-last) in float32 and in bf16 (``extract_dtype``);
* one online epoch before (float32, NCHW, the head's batch of 128 whole) and now
  (:func:`nolb.retrain.api.train_online`, which runs the backbone the same fast way);
* 10 epochs of the cached head on the same images (``train_on_source``).

It prints images per CPU-second and the first-run ratio ``10 online epochs / (extraction +
cached head)`` on these images (what benchmarks/retrain_speed.py measures in wall-clock on
all 12,406).

    python benchmarks/stage2_extract_profile.py --images 1024 --repeats 3 --out benchmarks/results/stage2_extract_profile.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from retrain_speed import cifar_data_and_backbone  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    import torch

    from nolb.retrain import FeatureSource, HeadSettings, online, train_on_source
    from nolb.retrain.api import train_online
    from nolb.retrain.inference import backbone_features

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="random tiny data and backbone (smoke test)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    data, model, _ = cifar_data_and_backbone(args.synthetic)
    n = min(args.images, len(data.train))
    data = dataclasses.replace(data, train=data.train.subset(np.random.RandomState(0).permutation(len(data.train))[:n]))
    settings = HeadSettings(method="gml", prior_strength=1.0, lr=0.02, epochs=10, batch_size=128, weight_decay=2e-4,
                            sampler="instance", init="original", seed=0)
    online_settings = HeadSettings(**{**settings.to_dict(), "epochs": 1})

    def extract_whole(batch):  # before: the loader's batch whole, channels-last, float32
        source = FeatureSource(model, data, batch_size=batch, seed=0, extract_dtype="float32")
        for x, _ in source.loader("train", train=True):
            backbone_features(source.backbone, x, chunk=len(x))

    def extract_now(dtype):
        def run():
            for _ in FeatureSource(model, data, batch_size=500, seed=0, extract_dtype=dtype).batches("train"):
                pass
        return run

    def online_epoch(before):
        def run():
            fast = online.backbone_features
            if before:  # the forward online used before the fix: the batch whole, NCHW, float32
                online.backbone_features = lambda backbone, x: backbone_features(backbone, x, channels_last=False,
                                                                                 chunk=len(x))
            try:
                train_online(FeatureSource(model, data, seed=0), online_settings)
            finally:
                online.backbone_features = fast
        return run

    cached = FeatureSource(model, data, seed=0, extract_dtype="float32")
    cached.split("train")

    variants = {
        "extract_before_b500": lambda: extract_whole(500), "extract_before_b256": lambda: extract_whole(256),
        "extract_now_fp32": extract_now("float32"), "extract_now_bf16": extract_now("bfloat16"),
        "online_epoch_before": online_epoch(True), "online_epoch_now": online_epoch(False),
        "cached_head_10_epochs": lambda: train_on_source(cached, settings),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.repeats):
        for name, fn in variants.items():
            start = time.process_time()
            fn()
            times[name].append(time.process_time() - start)
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()), file=sys.stderr, flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    head = med["cached_head_10_epochs"]
    ratios = {
        "online_epoch_before_over_extract_before_b256": med["online_epoch_before"] / med["extract_before_b256"],
        "online_epoch_now_over_extract_now_fp32": med["online_epoch_now"] / med["extract_now_fp32"],
        "online_epoch_now_over_extract_now_bf16": med["online_epoch_now"] / med["extract_now_bf16"],
        "first_run_before_b256": 10 * med["online_epoch_before"] / (med["extract_before_b256"] + head),
        "first_run_before_b500": 10 * med["online_epoch_before"] / (med["extract_before_b500"] + head),
        "first_run_now_fp32": 10 * med["online_epoch_now"] / (med["extract_now_fp32"] + head),
        "first_run_now_bf16": 10 * med["online_epoch_now"] / (med["extract_now_bf16"] + head),
        "first_run_bf16_vs_online_before": 10 * med["online_epoch_before"] / (med["extract_now_bf16"] + head),
    }
    for k, v in med.items():
        print(f"{k:24s} {v:7.2f} CPU-s  {n / v:7.0f} img/CPU-s  (repeats: {', '.join(f'{t:.2f}' for t in times[k])})")
    for k, v in ratios.items():
        print(f"{k:46s} {v:6.2f}x")
    common.write_result(args.out, {
        "benchmark": "stage2_extract_profile", "data": "synthetic" if args.synthetic else "CIFAR-10-LT IR 100",
        "images": n, "repeats": args.repeats, "cpu_seconds": times, "median_cpu_seconds": med,
        "images_per_cpu_second": {k: n / v for k, v in med.items()}, "ratios": ratios,
        "torch_threads": torch.get_num_threads(), "provenance": common.provenance()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
