"""Stage-2 speed: an ImageNet-LT-sized GML head, and cached vs online re-training on CIFAR-10-LT.

Part ``imagenet``: synthetic float16 features of ImageNet-LT's size (115,846 x 2048,
1,000 classes, a long-tailed count profile from 1,280 down to 5 images per class, the
same total as ImageNet-LT), 10 epochs of GML head training with
:func:`nolb.retrain.train_head` and the ImageNet recipe of METHOD.md section 4 (batch 256,
lr 0.005, wd 5e-4, cosine).  Target: <= 60 s on a 2-core CPU.  A short per-phase profile
(gather + cast, forward, loss, backward, SGD step) says where the time goes.

Part ``cifar``: a frozen ResNet-32 backbone (the shared third-party CIFAR-10 weights in
../shared/data/weights; a backbone trained on balanced CIFAR-10, so this is a speed and
agreement check, not a reproduction of the paper) re-trained on CIFAR-10-LT IR 100
(real images via nolb.data) with the same GML recipe (10 epochs, batch 128, lr 0.02):

* cached: the backbone runs once over K augmented views (K = 1 and K = 4), the head is
  trained on the stored features (:class:`nolb.retrain.FeatureSource` +
  :func:`nolb.retrain.train_on_source`); extraction and head training are timed apart;
* online: the backbone runs on freshly augmented batches in every epoch.

It reports the speed ratios (first run, extraction included; and per head once the
features exist, which is what a rerun or the validation selection of many heads pays)
and the test HM of each head with its 95% stratified bootstrap interval (1,000 resamples).

Each part runs in its own process (its own peak RSS).

    python benchmarks/retrain_speed.py --out benchmarks/results/retrain_speed.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

IMAGENET_LT = {"rows": 115_846, "dim": 2048, "classes": 1000, "max": 1280, "min": 5}


def long_tail_counts(total: int, classes: int, largest: int, smallest: int) -> np.ndarray:
    """A long-tailed profile from ``largest`` (class 0) down to ``smallest`` (last class) summing to ``total``.

    ``n_r = largest (smallest / largest)^((r / (C - 1))^p)``: p = 1 is Cao et al.'s
    exponential profile; p is chosen by bisection so the (floored) counts sum to about
    ``total``, and the last few images are spread over the classes in the middle.
    """
    t = np.arange(classes, dtype=np.float64) / max(classes - 1, 1)

    def counts(p: float) -> np.ndarray:
        return np.floor(largest * (smallest / largest) ** (t ** p) + 1e-9).astype(np.int64)

    lo, hi = 1e-3, 50.0  # the sum grows with p
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if counts(mid).sum() < total else (lo, mid)
    out = counts(lo)
    deficit = total - int(out.sum())
    order = np.arange(1, classes - 1)
    i = 0
    while deficit != 0 and len(order):
        c = order[i % len(order)]
        step = 1 if deficit > 0 else -1
        if smallest <= out[c] + step <= largest:
            out[c] += step
            deficit -= step
        i += 1
    return out


def synthetic_features(counts: np.ndarray, dim: int, seed: int = 0, chunk: int = 8192):
    """float16 (N, dim) features: a class mean plus Gaussian noise, after a ReLU (like pooled CNN features)."""
    import torch

    rng = np.random.default_rng(seed)
    classes = len(counts)
    means = rng.standard_normal((classes, dim), dtype=np.float32) * 0.5
    labels = np.repeat(np.arange(classes), counts)
    rng.shuffle(labels)
    features = np.empty((len(labels), dim), dtype=np.float16)
    for start in range(0, len(labels), chunk):
        y = labels[start:start + chunk]
        x = means[y] + rng.standard_normal((len(y), dim), dtype=np.float32)
        np.maximum(x, 0, out=x)
        features[start:start + chunk] = x
    return torch.from_numpy(features), torch.from_numpy(labels.astype(np.int64))


def profile_steps(features, labels, counts, *, batch_size: int, lr: float, steps: int = 60) -> dict:
    """Seconds per phase of the head's SGD step, measured over ``steps`` steps."""
    import torch

    from nolb.losses import build_loss

    head = torch.nn.Linear(features.shape[1], len(counts))
    loss_fn = build_loss("gml", torch.as_tensor(counts))
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    pool = features.float() if features.numel() * 4 <= 4 << 30 else features
    phases = {"gather_cast": 0.0, "forward": 0.0, "loss": 0.0, "backward": 0.0, "step": 0.0}
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(features.shape[0], generator=generator)
    for s in range(steps + 5):
        t0 = time.perf_counter()
        index = order[(s * batch_size) % (len(order) - batch_size):][:batch_size]
        x, y = pool[index].float(), labels[index]
        t1 = time.perf_counter()
        logits = head(x)
        t2 = time.perf_counter()
        loss = loss_fn(logits, y)
        t3 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        optimizer.step()
        t5 = time.perf_counter()
        if s >= 5:
            for name, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                phases[name] += dt
    return {name: value / steps for name, value in phases.items()}


def part_headsteps(args: argparse.Namespace) -> dict:
    """Seconds per SGD step of the ImageNet-sized head under candidate speed-ups (evidence for a fix).

    Variants, interleaved: ``fp32`` (what :func:`nolb.retrain.head_training.fit_head` does),
    ``fused_sgd`` (``torch.optim.SGD(..., fused=True)``), ``bf16`` (forward/backward of the
    linear layer under CPU bf16 autocast; the loss stays fp32), ``bf16_fused`` (both),
    ``batch512`` (fp32, twice the batch: half the steps; a recipe change, for scale).
    Images per second = rows per second of training, comparable across batch sizes.
    """
    import torch

    from nolb.losses import build_loss

    rows = args.rows or IMAGENET_LT["rows"]
    dim = args.dim or (IMAGENET_LT["dim"] if not args.rows else 256)
    classes = args.classes or (IMAGENET_LT["classes"] if not args.rows else min(100, rows // 10))
    counts = long_tail_counts(rows, classes, min(IMAGENET_LT["max"], rows // 4), IMAGENET_LT["min"])
    features, labels = synthetic_features(counts, dim, seed=0)
    pool = features.float()
    loss_fn = build_loss("gml", torch.as_tensor(counts))
    variants = {"fp32": (256, False, False), "fused_sgd": (256, True, False), "bf16": (256, False, True),
                "bf16_fused": (256, True, True), "batch512": (512, False, False)}
    steps = args.profile_steps
    timings: dict[str, list[float]] = {k: [] for k in variants}
    losses: dict[str, float] = {}
    for _ in range(3):
        for name, (batch, fused, bf16) in variants.items():
            torch.manual_seed(0)
            head = torch.nn.Linear(dim, classes)
            kwargs = {"fused": True} if fused else {}
            optimizer = torch.optim.SGD(head.parameters(), lr=0.005, momentum=0.9, weight_decay=5e-4, **kwargs)
            order = torch.randperm(rows, generator=torch.Generator().manual_seed(0))
            start = None
            for s in range(steps + 5):
                if s == 5:
                    start = time.perf_counter()
                index = order[(s * batch) % (rows - batch):][:batch]
                x, y = pool[index], labels[index]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = head(x)
                loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            timings[name].append(steps * batch / (time.perf_counter() - start))
            losses[name] = float(loss.detach())
    out = {name: {"rows_per_second": common.summary(v), "last_loss": losses[name]} for name, v in timings.items()}
    base = out["fp32"]["rows_per_second"]["median"]
    for name in out:
        out[name]["speedup_over_fp32"] = out[name]["rows_per_second"]["median"] / base
        out[name]["projected_10_epoch_seconds"] = 10 * rows / out[name]["rows_per_second"]["median"]
    return {"rows": rows, "dim": dim, "classes": classes, "steps_per_variant": steps, "variants": out,
            "peak_rss_mib": common.peak_rss_mib()}


def part_imagenet(args: argparse.Namespace) -> dict:
    import torch

    from nolb.retrain import FeatureSplit, HeadSettings, train_head

    spec = dict(IMAGENET_LT)
    if args.rows:
        spec.update(rows=args.rows, classes=args.classes or min(100, args.rows // 10), dim=args.dim or 256)
        spec.update(max=min(spec["max"], spec["rows"] // 4))
    counts = long_tail_counts(spec["rows"], spec["classes"], spec["max"], spec["min"])
    t0 = time.perf_counter()
    features, labels = synthetic_features(counts, spec["dim"], seed=0)
    generate_s = time.perf_counter() - t0
    rss_data = common.current_rss_mib()
    torch.manual_seed(0)
    original = torch.nn.Linear(spec["dim"], spec["classes"])
    settings = HeadSettings(method="gml", prior_strength=1.0, lr=0.005, epochs=args.epochs, batch_size=256,
                            weight_decay=5e-4, sampler="instance", init="original", seed=0)
    split = FeatureSplit(features, labels, features.shape[0])
    start = time.perf_counter()
    trained = train_head(settings, split, torch.as_tensor(counts), original, None)
    seconds = time.perf_counter() - start
    history = trained.details.get("history", [])
    phases = profile_steps(features, labels, counts, batch_size=256, lr=0.005, steps=args.profile_steps)
    steps = args.epochs * int(np.ceil(spec["rows"] / 256))
    return {
        "rows": spec["rows"], "dim": spec["dim"], "classes": spec["classes"],
        "counts": {"max": int(counts.max()), "min": int(counts.min()), "total": int(counts.sum()),
                   "imbalance_ratio": float(counts.max() / counts.min())},
        "epochs": args.epochs, "batch_size": 256, "steps": steps, "seconds": seconds,
        "steps_per_second": steps / seconds, "rows_per_second": args.epochs * spec["rows"] / seconds,
        "target_seconds": 60.0, "target_met": seconds <= 60.0,
        "loss_first_last": [history[0]["loss"], history[-1]["loss"]] if history else None,
        "profile_seconds_per_step": phases,
        "profile_share": {k: v / sum(phases.values()) for k, v in phases.items()},
        "generate_seconds": generate_s, "features_mib": features.numel() * 2 / 2**20,
        "rss_after_features_mib": rss_data, "peak_rss_mib": common.peak_rss_mib(),
        "torch_threads": torch.get_num_threads(),
    }


def cifar_data_and_backbone(synthetic: bool):
    """CIFAR-10-LT (IR 100) with the CIFAR-10 ResNet-32 checkpoint in eval mode, or (``synthetic``) tiny
    random data and a random ResNet-32 for smoke runs; with the backbone's name for the result file."""
    import torch

    from nolb.models import build_model

    torch.manual_seed(0)
    if synthetic:
        data = synthetic_cifar()
        model, name = build_model("resnet32", data.num_classes), "random resnet32 (synthetic smoke run)"
    else:
        data = common.cifar10_lt(100)
        model, name = common.load_resnet32_cifar10(), "resnet32-d509ac18.th (akamaster, CIFAR-10)"
    return data, model.eval(), name


def synthetic_cifar(n_per_class=(40, 20, 10, 5), test_per_class: int = 10, seed: int = 0):
    """A tiny LTData-like object of random 32x32 images (for smoke tests)."""
    import torch

    from nolb.data import TensorImageDataset
    from nolb.data.registry import LTData

    rng = np.random.default_rng(seed)
    classes = len(n_per_class)

    def split(per_class):
        y = np.repeat(np.arange(classes), per_class)
        return TensorImageDataset(rng.integers(0, 256, (len(y), 3, 32, 32), dtype=np.uint8), y)

    return LTData(train=split(list(n_per_class)), val=split([test_per_class] * classes),
                  test=split([test_per_class] * classes), num_classes=classes,
                  class_counts=torch.as_tensor(list(n_per_class)), class_names=[str(c) for c in range(classes)],
                  preset="cifar", image_size=32, in_channels=3, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26),
                  info={"name": "synthetic"})


def hm_with_interval(head, test, counts, num_classes: int, bootstrap: int) -> dict:
    from nolb.metrics import recall_report
    from nolb.retrain.scoring import head_logits

    pred = head_logits(head, test.features).argmax(1).numpy()
    report = recall_report(test.labels.numpy(), pred, num_classes=num_classes, train_counts=np.asarray(counts),
                           bootstrap=bootstrap, seed=0)
    return {"hm": report.hm, "hm_interval": list(report.intervals.get("hm", (None, None))),
            "am": report.am, "lowest": report.lowest, "accuracy": report.accuracy}


def part_cifar(args: argparse.Namespace) -> dict:
    import torch

    from nolb.retrain import FeatureSource, HeadSettings, train_on_source
    from nolb.retrain.api import train_online

    data, model, backbone_name = cifar_data_and_backbone(args.synthetic)
    settings = HeadSettings(method="gml", prior_strength=1.0, lr=0.02, epochs=args.epochs, batch_size=128,
                            weight_decay=2e-4, sampler="instance", init="original", seed=0)
    counts = data.class_counts.numpy()
    # The first optimiser of a process imports torch._dynamo (~2 CPU-s, measured with cProfile): paid here,
    # untimed, so that it is charged to neither arm (in `nolb run` stage 1 has paid it already).
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    # test features once (not timed), shared by all heads' scoring
    test = FeatureSource(model, data, views=1).split("test")
    base = hm_with_interval(FeatureSource(model, data, views=1).original_head, test, counts, data.num_classes,
                            args.bootstrap)
    rows = {}
    for views in args.views:
        source = FeatureSource(model, data, views=views, batch_size=256, seed=0)
        start, cpu = time.perf_counter(), time.process_time()
        source.split("train")
        extract_s, extract_cpu = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        trained = train_on_source(source, settings)  # cached, no selection
        head_s, head_cpu = time.perf_counter() - start, time.process_time() - cpu
        rows[f"cached_k{views}"] = {"views": views, "extract_seconds": extract_s, "head_seconds": head_s,
                                    "seconds": extract_s + head_s, "extract_dtype": source.extract_dtype,
                                    "cpu_seconds": extract_cpu + head_cpu, "extract_cpu_seconds": extract_cpu,
                                    **hm_with_interval(trained.head, test, counts, data.num_classes, args.bootstrap)}
        print(f"  cached K={views}: extract {extract_s:.1f} s, head {head_s:.2f} s", file=sys.stderr, flush=True)
    online_epochs = args.online_epochs or args.epochs
    source = FeatureSource(model, data, views=1, seed=0)
    start, cpu = time.perf_counter(), time.process_time()
    online_settings = settings if online_epochs == args.epochs else HeadSettings(**{**settings.to_dict(), "epochs": online_epochs})
    trained = train_online(source, online_settings)
    online_s, online_cpu = time.perf_counter() - start, time.process_time() - cpu
    # an online run of fewer epochs is scaled to the full count for the ratio
    online_full_s = online_s * args.epochs / online_epochs
    online_full_cpu = online_cpu * args.epochs / online_epochs
    rows["online"] = {"epochs_run": online_epochs, "seconds": online_s, "seconds_for_full_epochs": online_full_s,
                      "cpu_seconds": online_cpu, "cpu_seconds_for_full_epochs": online_full_cpu,
                      **hm_with_interval(trained.head, test, counts, data.num_classes, args.bootstrap)}
    print(f"  online: {online_s:.1f} s ({online_epochs} epochs)", file=sys.stderr, flush=True)
    ratios = {}
    for key, row in rows.items():
        if key.startswith("cached"):
            ratios[f"online_over_{key}_first_run"] = online_full_s / row["seconds"]
            ratios[f"online_over_{key}_head_only"] = online_full_s / row["head_seconds"]
            ratios[f"online_over_{key}_first_run_cpu"] = online_full_cpu / row["cpu_seconds"]
    agreement = {}
    o = rows["online"]
    for key, row in rows.items():
        if key.startswith("cached") and o["hm_interval"][0] is not None:
            agreement[key] = {
                "hm_difference": row["hm"] - o["hm"],
                "cached_hm_in_online_interval": o["hm_interval"][0] <= row["hm"] <= o["hm_interval"][1],
                "online_hm_in_cached_interval": row["hm_interval"][0] <= o["hm"] <= row["hm_interval"][1],
            }
    return {"data": "synthetic" if args.synthetic else "CIFAR-10-LT IR 100 (../shared/data/cifar10 via nolb.data)",
            "train_images": len(data.train), "test_images": len(data.test), "backbone": backbone_name,
            "recipe": settings.to_dict(), "bootstrap": args.bootstrap, "base_head": base, "rows": rows,
            "ratios": ratios, "agreement": agreement, "peak_rss_mib": common.peak_rss_mib(),
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="imagenet,cifar",
                        help="comma-separated: imagenet, cifar, headsteps (speed-up candidates of the head step)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rows", type=int, default=0, help="imagenet part: fewer rows (and 256-d, <= 100 classes)")
    parser.add_argument("--classes", type=int, default=0)
    parser.add_argument("--dim", type=int, default=0)
    parser.add_argument("--profile-steps", type=int, default=60)
    parser.add_argument("--views", type=lambda s: [int(v) for v in s.split(",")], default=[1, 4],
                        help="cached views to time, e.g. 1,4")
    parser.add_argument("--online-epochs", type=int, default=0,
                        help="run online for fewer epochs and scale its time (0: same epochs)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--synthetic", action="store_true", help="cifar part: random tiny data and backbone")
    parser.add_argument("--in-process", action="store_true", help="no worker processes (tests)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    parts = {"imagenet": part_imagenet, "cifar": part_cifar, "headsteps": part_headsteps}
    if args.worker:
        print(json.dumps(parts[args.worker](args)))
        return 0
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if not a.startswith("--out")]
    if "--out" in forwarded:  # pragma: no cover - defensive: drop "--out PATH" pairs
        i = forwarded.index("--out")
        del forwarded[i:i + 2]
    if args.out is not None and str(args.out) in forwarded:
        forwarded.remove(str(args.out))
    results = {}
    for name in [p.strip() for p in args.parts.split(",") if p.strip()]:
        if args.in_process:
            results[name] = parts[name](args)
        else:
            results[name] = common.run_worker(Path(__file__).resolve(), [*forwarded, "--worker", name], timeout=1800)
    if "imagenet" in results:
        r = results["imagenet"]
        print(f"imagenet-sized GML head: {r['rows']} x {r['dim']} fp16, {r['classes']} classes, {r['epochs']} epochs: "
              f"{r['seconds']:.1f} s ({r['steps_per_second']:.0f} steps/s), peak RSS {r['peak_rss_mib']:.0f} MiB; "
              f"target 60 s: {'met' if r['target_met'] else 'MISSED'}")
        print("  per-step profile (ms): " + ", ".join(f"{k} {v * 1e3:.2f}" for k, v in r["profile_seconds_per_step"].items()))
    if "headsteps" in results:
        for name, r in results["headsteps"]["variants"].items():
            print(f"  head step {name:<11} {r['rows_per_second']['median']:9.0f} rows/s  x{r['speedup_over_fp32']:.2f}  "
                  f"-> 10 epochs ~{r['projected_10_epoch_seconds']:.0f} s  (last loss {r['last_loss']:.3f})")
    if "cifar" in results:
        r = results["cifar"]
        print(f"cifar: base HM {r['base_head']['hm']:.4f}")
        for key, row in r["rows"].items():
            lo, hi = row["hm_interval"]
            print(f"  {key:<10} {row['seconds']:7.1f} s  HM {row['hm']:.4f} [{lo:.4f}, {hi:.4f}]  Acc {row['accuracy']:.4f}")
        for key, value in r["ratios"].items():
            print(f"  {key:<34} {value:7.1f}x")
    common.write_result(args.out, {"benchmark": "retrain_speed", "results": results,
                                   "provenance": common.provenance()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
