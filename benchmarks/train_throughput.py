"""Training throughput of ResNet-32 on CIFAR-10-LT-sized data: bare step vs nolb's loop vs a reference loop.

Three measurements in one run, on the same model, batch size and device:

1. **bare model step**: forward + loss + backward + SGD step on one batch already in
   memory (normalised, on the device): the upper bound for any training loop;
2. **nolb loop**: :func:`nolb.engine.loop.train_one_epoch` fed by :func:`nolb.data.build_loader`
   on a :class:`TensorImageDataset` (sampling, pad-4 crop + flip on whole batches,
   normalisation), with the chosen precision and memory format;
3. **reference loop**: what the published LT code does: a torch ``DataLoader`` over PIL
   images with per-image ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``, ``ToTensor``,
   ``Normalize``, fp32, contiguous (NCHW).

It prints images/s and the ratios (nolb / bare must be >= 0.90), and writes a JSON file.

    python benchmarks/train_throughput.py --steps 60 --precision bf16 --channels-last \
        --out benchmarks/results/train_throughput.json

Images are random uint8 by default (content does not change speed); ``--shared-cifar``
uses the real images of ../shared/data/cifar10 instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR_LT_IR100_SIZE = 12406  # CIFAR-10-LT at imbalance ratio 100
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def make_images(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32, 3) images and labels: random, or the first N shared CIFAR-10 images."""
    n = args.images
    if args.shared_cifar:
        source = np.load(REPO_ROOT.parent / "shared" / "data" / "cifar10" / "train_0.npz")
        return source["x"][:n], source["y"][:n].astype(np.int64)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def timed(run_steps, warmup: int, steps: int, batch: int) -> float:
    """Images per second of ``run_steps(steps)`` after ``run_steps(warmup)``."""
    run_steps(warmup)
    start = time.perf_counter()
    run_steps(steps)
    return steps * batch / (time.perf_counter() - start)


def new_model_and_optimizer(device: torch.device, channels_last: bool):
    from nolb.models import build_model

    torch.manual_seed(0)
    model = build_model("resnet32", 10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)


def bare_step(args, device, images, labels) -> float:
    from nolb.engine.precision import autocast_context

    model, optimizer = new_model_and_optimizer(device, args.channels_last)
    model.train()
    x = (torch.from_numpy(images[: args.batch_size]).permute(0, 3, 1, 2).float() / 255).to(device)
    x = ((x - torch.tensor(MEAN, device=device).view(1, 3, 1, 1)) / torch.tensor(STD, device=device).view(1, 3, 1, 1))
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(labels[: args.batch_size]).to(device)

    def run(steps: int) -> None:
        for _ in range(steps):
            with autocast_context(device, args.precision):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)

    return timed(run, args.warmup, args.steps, args.batch_size)


def nolb_loop(args, device, images, labels) -> float:
    from nolb.data import TensorImageDataset, build_loader
    from nolb.engine.loop import train_one_epoch
    from nolb.engine.precision import make_grad_scaler

    model, optimizer = new_model_and_optimizer(device, args.channels_last)
    dataset = TensorImageDataset(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels)
    loader = build_loader(dataset, batch_size=args.batch_size, train=True, preset="cifar", mean=MEAN, std=STD,
                          device=device, channels_last=args.channels_last)
    scaler = make_grad_scaler(device, args.precision)
    loss_fn = torch.nn.CrossEntropyLoss()
    epoch = [0]

    def run(steps: int) -> None:
        loader.set_epoch(epoch[0])
        epoch[0] += 1
        train_one_epoch(model, loader, loss_fn, optimizer, scaler, device=device, precision=args.precision,
                        channels_last=args.channels_last, max_steps=steps)
        sync(device)

    return timed(run, args.warmup, args.steps, args.batch_size)


def reference_loop(args, device, images, labels) -> float:
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    class PilImages(Dataset):
        def __len__(self) -> int:
            return len(labels)

        def __getitem__(self, i: int):
            return transform(Image.fromarray(images[i])), int(labels[i])

    model, optimizer = new_model_and_optimizer(device, channels_last=False)
    model.train()
    loader = DataLoader(PilImages(), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, persistent_workers=args.workers > 0)

    def run(steps: int) -> None:
        done = 0
        while done < steps:
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done += 1
                if done == steps:
                    break
        sync(device)

    return timed(run, args.warmup, args.steps, args.batch_size)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=CIFAR_LT_IR100_SIZE)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="bf16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference loop")
    parser.add_argument("--shared-cifar", action="store_true", help="real images from ../shared/data/cifar10")
    parser.add_argument("--out", type=Path, help="JSON result file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if args.out and args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists (pass --overwrite to replace it)")
    device = torch.device(args.device)
    images, labels = make_images(args)
    results = {
        "bare_step": bare_step(args, device, images, labels),
        "nolb_loop": nolb_loop(args, device, images, labels),
        "reference_loop": reference_loop(args, device, images, labels),
    }
    ratios = {
        "nolb_over_bare": results["nolb_loop"] / results["bare_step"],
        "reference_over_bare": results["reference_loop"] / results["bare_step"],
        "nolb_over_reference": results["nolb_loop"] / results["reference_loop"],
    }
    print(f"ResNet-32, batch {args.batch_size}, {args.precision}{' + channels_last' if args.channels_last else ''} "
          f"(reference loop: fp32, NCHW, PIL transforms), {device}, {torch.get_num_threads()} threads")
    for name, value in results.items():
        print(f"  {name:<15} {value:8.1f} img/s")
    for name, value in ratios.items():
        print(f"  {name:<20} {value:6.3f}")
    if args.out:
        from nolb.io import write_json
        from nolb.provenance import environment, git_commit

        write_json(args.out, {"images_per_second": results, "ratios": ratios, "settings": vars(args) | {"out": str(args.out)},
                              "git": git_commit(), "environment": environment()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
