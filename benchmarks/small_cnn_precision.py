"""The small CNN's training step in fp32 and in bf16 autocast, NCHW and channels-last (issue 16, item 1).

The issue measured bf16 eight times slower than fp32 for the small CNN on an AMX CPU; this checks it on
the current torch: one SGD step (forward, cross-entropy, backward, update) on a synthetic batch of 28 x 28
grey images, per width / depth / memory format / precision, variants interleaved in each of ``--repeats``
rounds, medians of images per CPU-second (``time.process_time``) and per wall second.

    python benchmarks/small_cnn_precision.py --threads 1 2 --out benchmarks/results/small_cnn_precision.json
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets OMP_WAIT_POLICY=PASSIVE before torch loads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nolb.models.small_cnn import SmallCNN  # noqa: E402

MODELS = {"w32-d1": (32, 1), "w32-d2": (32, 2)}  # the old and the current Fashion-MNIST recipe's model


def images_per_second(width: int, depth: int, channels_last: bool, precision: str, batch: int, steps: int) -> tuple:
    torch.manual_seed(0)
    model = SmallCNN(10, width=width, depth=depth)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.process_time() - cpu), batch * steps / (time.perf_counter() - wall)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        variants = list(itertools.product(MODELS, (False, True), ("fp32", "bf16")))
        samples = {v: [] for v in variants}
        for _ in range(args.repeats):
            for v in variants:
                width, depth = MODELS[v[0]]
                samples[v].append(images_per_second(width, depth, v[1], v[2], args.batch_size, args.steps))
        for (model, channels_last, precision), values in samples.items():
            row = {"threads": threads, "model": model, "channels_last": channels_last, "precision": precision,
                   "images_per_cpu_second": statistics.median(c for c, _ in values),
                   "images_per_wall_second": statistics.median(w for _, w in values)}
            rows.append(row)
            print(f"{threads} thread(s) {model} {'channels-last' if channels_last else 'NCHW'} {precision}: "
                  f"{row['images_per_cpu_second']:.0f} img/CPU-s, {row['images_per_wall_second']:.0f} img/s", flush=True)
    common.write_result(args.out, {"provenance": common.provenance(), "native_bf16": bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported()), "batch_size": args.batch_size, "rows": rows})


if __name__ == "__main__":
    main()
