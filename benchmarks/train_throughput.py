"""Stage-1 training throughput, ResNet-32 on CIFAR-10-LT: bare step vs nolb's step vs a reference loop.

Variants, all on the same model (nolb's ``resnet32``), batch size and device:

* ``bare``: forward + loss + backward + SGD step on one batch already in memory
  (normalised, on the device): the upper bound for any training loop;
* ``nolb``: :func:`nolb.engine.loop.train_one_epoch` (the trainer's step) fed by
  :func:`nolb.data.build_loader` over the real CIFAR-10-LT ``TensorImageDataset``:
  sampling, pad-4 crop + flip on whole batches, normalisation, forward, backward, update;
* ``reference``: what the published LT code does: a torch ``DataLoader`` over PIL images
  with per-image ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``,
  ``Normalize``, fp32, contiguous NCHW.

``bare`` and ``nolb`` run in fp32 and in bf16 autocast + channels_last; ``reference`` in
fp32 only.  Each measurement runs in a fresh process (so each has its own peak RSS), and
the variants are interleaved ``--repeats`` times (A B C A B C ...) so that a shared,
loaded CPU hurts them alike; medians are reported.

    python benchmarks/train_throughput.py --out benchmarks/results/train_throughput.json

``--variants ...,loadnolb:fp32,loadref:fp32`` adds the data paths alone (no model);
``--carry-file .device-carry/cifar10_lt_ir100.npz`` reads the training set from the GPU
carry file (on the device machine, where ../shared is absent).  Images per CPU-second are
reported beside wall-clock images/s: on a shared CPU they are disturbed much less.

Ratios: ``nolb/bare`` per precision (target >= 0.90) and ``nolb(bf16+cl)/reference``
(goal >= 2.5).  ``--synthetic`` uses random images instead of the real data (tests).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

VARIANTS = ("bare:fp32", "nolb:fp32", "reference:fp32", "bare:bf16cl", "nolb:bf16cl")
# the data path alone (no model): ``--variants loadnolb:fp32,loadref:fp32``
LOADER_VARIANTS = ("loadnolb:fp32", "loadref:fp32")


# ---------------------------------------------------------------------------------------------
# one measurement (in a worker process)


def _model(device, channels_last: bool):
    import torch

    from nolb.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet32", 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    return model, optimizer


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reference_loader(images, labels, mean, std, batch_size: int, workers: int, pin_memory: bool = False):
    """The published-code data path: a torchvision DataLoader over per-image PIL transforms
    (pad-4 random crop, flip, ToTensor, Normalize)."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    hwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(mean, std)])

    class PilImages(Dataset):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i: int):
            return transform(Image.fromarray(hwc[i])), int(labels[i])

    return DataLoader(PilImages(), batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, persistent_workers=workers > 0, pin_memory=pin_memory)


def measure(variant: str, data: dict, *, steps: int, warmup: int, batch_size: int, device: str = "cpu",
            ref_workers: int = 0) -> dict:
    """Images/s of one variant (``kind:precision``) on ``data`` (uint8 NCHW images, labels, mean, std)."""
    import torch
    import torch.nn.functional as F

    from nolb.engine.precision import autocast_context

    kind, mode = variant.split(":")
    precision = "bf16" if mode == "bf16cl" else "fp32"
    channels_last = mode == "bf16cl"
    dev = torch.device(device)
    images, labels = data["images"], data["labels"]
    mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
    rss_before = common.current_rss_mib()

    if kind == "bare":
        model, optimizer = _model(dev, channels_last)
        model.train()
        # a few distinct, already-normalised batches of random images of the set, cycled: one
        # fixed batch (all one class in a class-sorted set) drives the loss to ~0 and the
        # gradients into float denormals, which are many times slower on x86 CPUs
        pick = np.random.default_rng(0).permutation(len(labels))[: batch_size * 8]
        batches = []
        for b in range(0, len(pick) - batch_size + 1, batch_size):
            idx = np.sort(pick[b:b + batch_size])
            xb = torch.from_numpy(images[idx]).float().div(255).to(dev)
            xb = (xb - torch.tensor(mean, device=dev).view(1, 3, 1, 1)) / torch.tensor(std, device=dev).view(1, 3, 1, 1)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            batches.append((xb, torch.from_numpy(labels[idx]).to(dev)))
        if not batches:
            raise ValueError(f"need at least {batch_size} images")

        cursor = [0]

        def run(n: int) -> None:
            for _ in range(n):
                x, y = batches[cursor[0] % len(batches)]
                cursor[0] += 1
                with autocast_context(dev, precision):
                    loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            _sync(dev)

    elif kind == "nolb":
        from nolb.data import TensorImageDataset, build_loader
        from nolb.engine.loop import train_one_epoch
        from nolb.engine.precision import make_grad_scaler

        model, optimizer = _model(dev, channels_last)
        dataset = TensorImageDataset(torch.from_numpy(images), torch.from_numpy(labels))
        loader = build_loader(dataset, batch_size=batch_size, train=True, preset="cifar", mean=mean, std=std,
                              device=dev, channels_last=channels_last, seed=0)
        scaler = make_grad_scaler(dev, precision)
        loss_fn = torch.nn.CrossEntropyLoss()
        epoch = [0]

        def run(n: int) -> None:
            done = 0
            while done < n:  # successive (partial) epochs, exactly as the trainer calls them
                loader.set_epoch(epoch[0])
                epoch[0] += 1
                stats = train_one_epoch(model, loader, loss_fn, optimizer, scaler, device=dev, precision=precision,
                                        channels_last=channels_last, max_steps=n - done)
                done += stats.steps
            _sync(dev)

    elif kind == "reference":
        if precision != "fp32" or channels_last:
            raise ValueError("the reference loop is fp32, NCHW only")
        model, optimizer = _model(dev, channels_last=False)
        model.train()
        loader = _reference_loader(images, labels, mean, std, batch_size, ref_workers, pin_memory=dev.type == "cuda")

        def run(n: int) -> None:
            done = 0
            while done < n:
                for xb, yb in loader:
                    xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
                    loss = F.cross_entropy(model(xb), yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    done += 1
                    if done == n:
                        break
            _sync(dev)

    elif kind in ("loadnolb", "loadref"):  # the data path alone: batches produced, no model
        if kind == "loadnolb":
            from nolb.data import TensorImageDataset, build_loader

            loader = build_loader(TensorImageDataset(torch.from_numpy(images), torch.from_numpy(labels)),
                                  batch_size=batch_size, train=True, preset="cifar", mean=mean, std=std, device=dev,
                                  channels_last=channels_last, seed=0)
        else:
            loader = _reference_loader(images, labels, mean, std, batch_size, ref_workers)

        def run(n: int) -> None:
            done = 0
            while done < n:
                for xb, yb in loader:
                    xb = xb.to(dev)
                    done += 1
                    if done == n:
                        break
            _sync(dev)

    else:
        raise ValueError(f"unknown variant {variant!r}")

    run(warmup)
    start, cpu_start = time.perf_counter(), time.process_time()
    run(steps)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    # images per CPU-second (all threads of this process): less sensitive than wall time to
    # other processes on a shared CPU (reference-loop workers, if any, are not counted)
    out = {"variant": variant, "images_per_second": steps * batch_size / seconds, "seconds": seconds,
           "cpu_seconds": cpu_seconds, "images_per_cpu_second": steps * batch_size / cpu_seconds,
           "steps": steps, "batch_size": batch_size, "peak_rss_mib": common.peak_rss_mib(),
           "rss_before_model_mib": rss_before, "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def load_data(args: argparse.Namespace) -> dict:
    """The training images (uint8 NCHW), labels and normalisation constants."""
    if args.synthetic:
        rng = np.random.default_rng(0)
        n = args.images or 1024
        return {"images": rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
                "labels": rng.integers(0, 10, n).astype(np.int64),
                "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616), "source": "synthetic"}
    if args.carry_file is not None:  # the GPU carry file of benchmarks/gpu_carry.py (no ../shared there)
        with np.load(args.carry_file) as f:
            images, labels = f["train_x"], f["train_y"].astype(np.int64)
            mean, std = tuple(float(v) for v in f["mean"]), tuple(float(v) for v in f["std"])
        if args.images:
            images, labels = images[: args.images], labels[: args.images]
        return {"images": images, "labels": labels, "mean": mean, "std": std,
                "source": f"CIFAR-10-LT IR 100 from the carry file {args.carry_file.name}"}
    data = common.cifar10_lt(args.imbalance_ratio)
    images, labels = data.train.images.numpy(), data.train.labels.numpy()
    if args.images:
        images, labels = images[: args.images], labels[: args.images]
    return {"images": images, "labels": labels, "mean": data.mean, "std": data.std,
            "source": f"CIFAR-10-LT IR {args.imbalance_ratio:g} (../shared/data/cifar10 via nolb.data)"}


# ---------------------------------------------------------------------------------------------
# driver


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions of every variant")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--imbalance-ratio", type=float, default=100)
    parser.add_argument("--images", type=int, default=0, help="use only the first N training images (0: all)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated kind:mode list")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ref-workers", type=int, default=0, help="DataLoader workers of the reference loop")
    parser.add_argument("--synthetic", action="store_true", help="random images instead of the real data")
    parser.add_argument("--carry-file", type=Path, help="read the training set from benchmarks/gpu_carry.py's npz")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process (faster; peak RSS is then cumulative)")
    parser.add_argument("--out", type=Path, help="JSON result file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data-file", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def ratio(results: dict, a: str, b: str) -> float | None:
    if a in results and b in results:
        return results[a]["images_per_second"]["median"] / results[b]["images_per_second"]["median"]
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    opts = dict(steps=args.steps, warmup=args.warmup, batch_size=args.batch_size, device=args.device,
                ref_workers=args.ref_workers)
    if args.worker:  # one measurement in this fresh process
        with np.load(args.data_file) as f:
            data = {k: f[k] for k in f.files}
        print(json.dumps(measure(args.worker, data, **opts)))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    data = load_data(args)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="nolb-bench-") as tmp:
        data_file = Path(tmp) / "train.npz"
        np.savez(data_file, images=data["images"], labels=data["labels"], mean=np.asarray(data["mean"]),
                 std=np.asarray(data["std"]))
        for rep in range(args.repeats):
            for variant in variants:
                if args.in_process:
                    r = measure(variant, data, **opts)
                else:
                    r = common.run_worker(Path(__file__).resolve(), [
                        "--worker", variant, "--data-file", str(data_file), "--steps", str(args.steps),
                        "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--device", args.device,
                        "--ref-workers", str(args.ref_workers)])
                runs[variant].append(r)
                print(f"  [{rep + 1}/{args.repeats}] {variant:<15} {r['images_per_second']:8.1f} img/s  "
                      f"{r['images_per_cpu_second']:8.1f} img/CPU-s  "
                      f"peak RSS {r['peak_rss_mib']:7.1f} MiB", flush=True)
    results = {v: {"images_per_second": common.summary([r["images_per_second"] for r in rs]),
                   "images_per_cpu_second": common.summary([r["images_per_cpu_second"] for r in rs]),
                   "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                   **({"peak_cuda_mib": max(r["peak_cuda_mib"] for r in rs)} if "peak_cuda_mib" in rs[0] else {})}
               for v, rs in runs.items()}
    ratios = {
        "nolb_over_bare_fp32": ratio(results, "nolb:fp32", "bare:fp32"),
        "nolb_over_bare_bf16cl": ratio(results, "nolb:bf16cl", "bare:bf16cl"),
        "nolb_fp32_over_reference": ratio(results, "nolb:fp32", "reference:fp32"),
        "nolb_bf16cl_over_reference": ratio(results, "nolb:bf16cl", "reference:fp32"),
        "bare_bf16cl_over_bare_fp32": ratio(results, "bare:bf16cl", "bare:fp32"),
        "loader_nolb_over_reference": ratio(results, "loadnolb:fp32", "loadref:fp32"),
    }
    cpu_ratios = {
        name: (results[a]["images_per_cpu_second"]["median"] / results[b]["images_per_cpu_second"]["median"]
               if a in results and b in results else None)
        for name, (a, b) in {"nolb_over_bare_fp32": ("nolb:fp32", "bare:fp32"),
                             "nolb_over_bare_bf16cl": ("nolb:bf16cl", "bare:bf16cl"),
                             "nolb_fp32_over_reference": ("nolb:fp32", "reference:fp32"),
                             "nolb_bf16cl_over_reference": ("nolb:bf16cl", "reference:fp32"),
                             "bare_bf16cl_over_bare_fp32": ("bare:bf16cl", "bare:fp32")}.items()}
    # per-repeat ratios (same repeat = measured back to back): a noise check for the medians
    paired = {}
    for name, (a, b) in {"nolb_over_bare_fp32": ("nolb:fp32", "bare:fp32"),
                         "nolb_over_bare_bf16cl": ("nolb:bf16cl", "bare:bf16cl"),
                         "nolb_bf16cl_over_reference": ("nolb:bf16cl", "reference:fp32")}.items():
        if a in runs and b in runs:
            paired[name] = common.summary([x["images_per_second"] / y["images_per_second"]
                                           for x, y in zip(runs[a], runs[b])])
    targets = {
        "nolb_over_bare >= 0.90 (fp32)": None if ratios["nolb_over_bare_fp32"] is None else ratios["nolb_over_bare_fp32"] >= 0.90,
        "nolb_over_bare >= 0.90 (bf16+cl)": None if ratios["nolb_over_bare_bf16cl"] is None else ratios["nolb_over_bare_bf16cl"] >= 0.90,
        "nolb(bf16+cl)/reference >= 2.5": None if ratios["nolb_bf16cl_over_reference"] is None else ratios["nolb_bf16cl_over_reference"] >= 2.5,
    }
    print(f"ResNet-32, batch {args.batch_size}, {len(data['labels'])} images ({data['source']}), {args.device}; "
          f"median of {args.repeats} interleaved runs")
    for v, r in results.items():
        print(f"  {v:<15} {r['images_per_second']['median']:8.1f} img/s  "
              f"{r['images_per_cpu_second']['median']:8.1f} img/CPU-s   peak RSS {r['peak_rss_mib']:7.1f} MiB")
    for name, value in ratios.items():
        if value is not None:
            cpu = cpu_ratios.get(name)
            print(f"  {name:<28} {value:6.3f} (wall)" + (f"  {cpu:6.3f} (CPU time)" if cpu is not None else ""))
    result = {"benchmark": "train_throughput", "model": "resnet32", "batch_size": args.batch_size,
              "images": len(data["labels"]), "data": data["source"], "device": args.device,
              "reference": f"torch DataLoader, PIL RandomCrop(32, 4) + flip + ToTensor + Normalize, fp32, NCHW, "
                           f"{args.ref_workers} workers",
              "results": results, "ratios": ratios, "ratios_per_cpu_second": cpu_ratios, "paired_ratios": paired, "targets_met": targets,
              "runs": runs, "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "provenance": common.provenance()}
    common.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
