"""Stage 1 on the CPU: nolb's training step against a tight plain-PyTorch loop (issue 16).

The reference is the loop a user would write in 30 lines: the same model (built by nolb's
registry, same initial weights), the same batch size and SGD settings, the training images
held in memory as one uint8 tensor, a batched random crop after zero padding (and a
horizontal flip where the recipe flips) written here with ``torch.gather``-free indexing,
normalisation, forward, cross-entropy, backward, step; nothing else.  It runs in fp32 and in
fp32 + channels_last; the faster of the two (median) is "the reference".

nolb's side is the trainer's own step, :func:`nolb.engine.loop.train_one_epoch`, fed by
:func:`nolb.engine.components.build_loaders` from the packaged recipe (default settings:
its sampler, its augmentation, its precision, ``deterministic`` as the recipe says).

Models: SmallCNN on Fashion-MNIST-LT (``fashion_mnist_lt`` recipe: pad-2 crop, no flip) and
ResNet-32 on CIFAR-10-LT (``cifar10_lt`` recipe: pad-4 crop + flip; real CIFAR-10 via
``benchmarks/common.py``).  All variants run in one process, interleaved (ref-fp32,
ref-cl, nolb, ref-fp32, ...) ``--repeats`` times, each ``--steps`` timed steps after
``--warmup`` steps, each repeat split into ``--rounds`` interleaved chunks; medians.  The
ratio is taken on images per CPU-second of the process (``time.process_time``), which other
jobs on a shared CPU disturb much less than wall-clock time (also recorded).  The load
average is recorded next to each repeat: on a shared CPU absolute numbers are depressed.

``--breakdown`` adds where nolb's time goes per step (data, forward, backward, optimizer,
loss check) and per epoch (validation, log + checkpoint), by timers around each part.

    python benchmarks/stage1_vs_plain.py --out benchmarks/results/stage1_vs_plain.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
CASES = {
    "small_cnn": {"recipe": "fashion_mnist_lt", "padding": 2, "flip": False},
    "resnet32": {"recipe": "cifar10_lt", "padding": 4, "flip": True},
}


def case_config(name: str, synthetic: bool):
    from nolb.config import load_config

    overrides = ["train.device=cpu", "train.progress=false"]
    if name == "small_cnn":
        overrides.append(f"data.root={FASHION_ROOT}")
    else:
        overrides.append(f"data.root={common.cifar10_pickle_root()}")
    if synthetic:
        overrides = ["train.device=cpu", "train.progress=false"]
    return load_config(CASES[name]["recipe"], overrides)


def case_data(name: str, config, synthetic: bool):
    """The recipe's LTData (or a small random stand-in with the same shapes for tests)."""
    if not synthetic:
        from nolb.engine.components import build_data_from_config

        return build_data_from_config(config)
    from types import SimpleNamespace

    from nolb.data.tensor_dataset import TensorImageDataset

    g = torch.Generator().manual_seed(0)
    shape = (1, 28, 28) if name == "small_cnn" else (3, 32, 32)
    images = torch.randint(0, 256, (600, *shape), dtype=torch.uint8, generator=g)
    labels = torch.arange(600) % 10
    train = TensorImageDataset(images, labels)
    val = TensorImageDataset(images[:200], labels[:200])
    return SimpleNamespace(train=train, val=val, test=val, num_classes=10, class_counts=torch.bincount(labels),
                           preset="mnist" if name == "small_cnn" else "cifar", mean=(0.5,) * shape[0],
                           std=(0.25,) * shape[0], class_names=[str(i) for i in range(10)], info={},
                           in_channels=shape[0], image_size=shape[1])


# ---------------------------------------------------------------------------------------------
# the reference: a tight plain-PyTorch loop


class PlainLoop:
    """Model, SGD, in-memory uint8 images, batched crop (+ flip), fp32 (optionally channels_last)."""

    def __init__(self, model, images, labels, *, batch_size, lr, momentum, weight_decay, mean, std, padding, flip,
                 channels_last):
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.images, self.labels = images, labels
        self.batch_size, self.padding, self.flip, self.channels_last = batch_size, padding, flip, channels_last
        c = images.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
        self.order = torch.randperm(len(labels))
        self.position = 0

    def batch(self):
        if self.position + self.batch_size > len(self.order):
            self.order, self.position = torch.randperm(len(self.labels)), 0
        idx = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        x = self.images[idx]
        n, _, h, w = x.shape
        p = self.padding
        padded = F.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,))
        dx = torch.randint(0, 2 * p + 1, (n,))
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]
        if self.flip:
            mirror = torch.rand(n) < 0.5
            x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
        x = (x.float() / 255.0 - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.labels[idx]

    def steps(self, count: int) -> None:
        self.model.train()
        for _ in range(count):
            x, y = self.batch()
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()


# ---------------------------------------------------------------------------------------------
# nolb's step


class NolbSteps:
    """The trainer's pieces built from the recipe; ``steps(k)`` is ``train_one_epoch(max_steps=k)``."""

    def __init__(self, config, data):
        from nolb.engine import components as build
        from nolb.engine.precision import make_grad_scaler, resolve_precision

        self.config, self.data, self.build = config, data, build
        t = config.train
        self.device = torch.device("cpu")
        self.precision = resolve_precision(t.precision, self.device)  # the recipe's (``auto``: bf16 where native)
        self.model = build.build_model_from_config(config, data)
        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build.build_loss_from_config(config, data)
        self.optimizer = build.build_optimizer(config, self.model)
        self.scaler = make_grad_scaler(self.device, self.precision)
        self.train_loader, self.val_loader = build.build_loaders(config, data, device=self.device, rank=0, world_size=1)
        self.epoch = 0

    def steps(self, count: int) -> None:
        from nolb.engine.loop import train_one_epoch

        t = self.config.train
        self.train_loader.set_epoch(self.epoch)
        self.epoch += 1
        with self.build.determinism(t.deterministic):
            train_one_epoch(self.model, self.train_loader, self.loss_fn, self.optimizer, self.scaler,
                            device=self.device, precision=self.precision, channels_last=t.channels_last,
                            mixup_alpha=self.config.loss.mixup_alpha, max_steps=count)

    def breakdown(self, count: int) -> dict:
        """Seconds per step in each part of the trainer's step, and per epoch in validation / log + checkpoint."""
        from nolb.engine.precision import autocast_context
        from nolb.engine.run_dir import RunDir
        from nolb.engine.trainer import _save_last, _validate
        from nolb.engine.schedules import schedule_from_config

        t = self.config.train
        parts = {"data": 0.0, "forward": 0.0, "loss_check": 0.0, "backward": 0.0, "optimizer": 0.0}
        self.model.train()
        self.train_loader.set_epoch(self.epoch)
        done = 0
        with self.build.determinism(t.deterministic):
            it = iter(self.train_loader)
            while done < count:
                t0 = time.perf_counter()
                try:
                    x, y = next(it)
                except StopIteration:
                    it = iter(self.train_loader)
                    continue
                t1 = time.perf_counter()
                with autocast_context(self.device, self.precision):
                    loss = self.loss_fn(self.model(x), y)
                t2 = time.perf_counter()
                float(loss.detach())  # the trainer's per-step NaN check (host sync)
                t3 = time.perf_counter()
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                t4 = time.perf_counter()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                t5 = time.perf_counter()
                for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                    parts[key] += seconds
                done += 1
            per_step = {k: v / count for k, v in parts.items()}
            t0 = time.perf_counter()
            _validate(self.config, self.model, self.val_loader, self.data, self.device)
            validation = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as folder:
            run = RunDir(Path(folder) / "run")
            schedule = schedule_from_config(self.config.optim, t.epochs)
            t0 = time.perf_counter()
            run.write_log([{"epoch": 1, "train_loss": 0.0}])
            _save_last(run, self.model, self.optimizer, self.scaler, schedule, 1, {"epoch": None})
            logging = time.perf_counter() - t0
        steps_per_epoch = len(self.train_loader)
        return {"per_step_s": per_step, "per_epoch_s": {"validation": validation, "log_and_checkpoint": logging},
                "steps_per_epoch": steps_per_epoch,
                "epoch_share": _epoch_share(per_step, validation, logging, steps_per_epoch)}


def _epoch_share(per_step: dict, validation: float, logging: float, steps_per_epoch: int) -> dict:
    """Fraction of one epoch's time in each part."""
    parts = {k: v * steps_per_epoch for k, v in per_step.items()}
    parts.update(validation=validation, log_and_checkpoint=logging)
    total = sum(parts.values())
    return {k: round(v / total, 4) for k, v in parts.items()}


# ---------------------------------------------------------------------------------------------


def measure_case(name: str, *, steps: int, warmup: int, repeats: int, rounds: int, synthetic: bool,
                 breakdown: bool) -> dict:
    from nolb.engine.components import build_model_from_config

    config = case_config(name, synthetic)
    data = case_data(name, config, synthetic)
    o, t = config.optim, config.train
    images, labels = data.train.images, data.train.labels
    runners = {}
    for variant, cl in (("reference_fp32", False), ("reference_fp32_cl", True)):
        torch.manual_seed(t.seed)
        model = build_model_from_config(config, data)
        runners[variant] = PlainLoop(model, images, labels, batch_size=t.batch_size, lr=o.lr, momentum=o.momentum,
                                     weight_decay=o.weight_decay, mean=data.mean, std=data.std,
                                     padding=CASES[name]["padding"], flip=CASES[name]["flip"], channels_last=cl)
    torch.manual_seed(t.seed)
    runners["nolb"] = NolbSteps(config, data)
    for runner in runners.values():
        runner.steps(warmup)
    rates = {k: [] for k in runners}  # images per CPU-second of this process
    wall = {k: [] for k in runners}  # images per wall-clock second
    loads = []
    chunk = max(1, steps // rounds)
    for _ in range(repeats):
        cpu_s, wall_s = dict.fromkeys(runners, 0.0), dict.fromkeys(runners, 0.0)
        for _ in range(rounds):  # short interleaved chunks: a load burst hits every variant alike
            for variant, runner in runners.items():
                c0, w0 = time.process_time(), time.perf_counter()
                runner.steps(chunk)
                cpu_s[variant] += time.process_time() - c0
                wall_s[variant] += time.perf_counter() - w0
        for variant in runners:
            rates[variant].append(rounds * chunk * t.batch_size / cpu_s[variant])
            wall[variant].append(rounds * chunk * t.batch_size / wall_s[variant])
        loads.append(os.getloadavg()[0])
    medians = {k: statistics.median(v) for k, v in rates.items()}
    reference = max(("reference_fp32", "reference_fp32_cl"), key=lambda k: medians[k])
    result = {
        "model": name, "recipe": CASES[name]["recipe"], "batch_size": t.batch_size, "steps": steps,
        "warmup": warmup, "repeats": repeats, "train_images": len(labels),
        "nolb_settings": {"precision": runners["nolb"].precision, "precision_setting": t.precision,
                          "channels_last": t.channels_last, "deterministic": t.deterministic},
        "images_per_cpu_second": {k: common.summary(v) for k, v in rates.items()},
        "images_per_wall_second": {k: common.summary(v) for k, v in wall.items()},
        "ratio_wall_medians": statistics.median(wall["nolb"]) / statistics.median(wall[reference]),
        "load_average_1min_per_repeat": loads,
        "reference": reference,
        "ratio_nolb_over_reference": medians["nolb"] / medians[reference],
        "ratio_per_repeat": [n / r for n, r in zip(rates["nolb"], rates[reference])],
    }
    if breakdown:
        result["breakdown"] = runners["nolb"].breakdown(steps)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="small_cnn,resnet32")
    parser.add_argument("--steps", default="small_cnn=30,resnet32=6",
                        help="timed steps per repeat, per model (name=count,...)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved chunks per repeat")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="random images (tests)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    steps = {k: int(v) for k, v in (item.split("=") for item in args.steps.split(","))}
    result = {"provenance": common.provenance(), "threads": torch.get_num_threads(), "cases": []}
    for name in args.models.split(","):
        case = measure_case(name, steps=steps.get(name, 5), warmup=args.warmup, repeats=args.repeats, rounds=args.rounds,
                            synthetic=args.synthetic, breakdown=args.breakdown)
        result["cases"].append(case)
        ips = case["images_per_cpu_second"]
        print(f"{name}: nolb {ips['nolb']['median']:.0f} img/CPU-s, reference ({case['reference']}) "
              f"{ips[case['reference']]['median']:.0f} img/CPU-s, nolb/reference {case['ratio_nolb_over_reference']:.3f} "
              f"(wall-clock ratio {case['ratio_wall_medians']:.2f}) "
              f"(per repeat {', '.join(f'{r:.2f}' for r in case['ratio_per_repeat'])}; "
              f"load {', '.join(f'{x:.1f}' for x in case['load_average_1min_per_repeat'])})", flush=True)
        if "breakdown" in case:
            b = case["breakdown"]
            print("  per step (ms): " + ", ".join(f"{k} {1000 * v:.1f}" for k, v in b["per_step_s"].items())
                  + f"; per epoch (s): validation {b['per_epoch_s']['validation']:.2f}, "
                  f"log+checkpoint {b['per_epoch_s']['log_and_checkpoint']:.3f}; share of an epoch: {b['epoch_share']}",
                  flush=True)
    result["provenance"]["machine"]["load_average_at_end"] = list(os.getloadavg())
    result["peak_rss_mib"] = common.peak_rss_mib()
    common.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
