"""Stage-2 feature extraction on 1 vs N processes (CPU, gloo): images per second and gather cost.

Run once plainly and once under torchrun; each run appends one record to ``--out``:

    OMP_NUM_THREADS=1 python benchmarks/extraction_scaling.py --out benchmarks/results/extraction_scaling.json
    OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 benchmarks/extraction_scaling.py \
        --out benchmarks/results/extraction_scaling.json

The backbone is ResNet-32 (CIFAR, 64-dim features) on ``--images`` random 32 x 32 images in
batches of ``--batch-size``, K = ``--views`` augmented views, through the same code as
``nolb run`` under torchrun (:func:`nolb.retrain.ranks.sharded_batches`: each rank runs the
backbone on its batches, rank 0 gathers and orders them).  Reported on rank 0: the wall
time of the whole extraction (backbone + gather), its images per second, and the time of a
gather alone of the same payload (the features of the split, fp16) measured right after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--feature-dim", type=int, default=2048, help="width of the payload of the gather-only timing")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch.distributed as dist

    from nolb.data import build_loader
    from nolb.data.tensor_dataset import TensorImageDataset
    from nolb.engine.distributed import init_distributed
    from nolb.models import build_model
    from nolb.retrain import ranks
    from nolb.retrain.backbone import split_classifier

    info = init_distributed(torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(args.images) % 10
    dataset = TensorImageDataset(images, labels)
    loader = build_loader(dataset, batch_size=args.batch_size, train=True, preset="cifar", mean=(0.5,) * 3,
                          std=(0.25,) * 3, drop_last=False)
    torch.manual_seed(0)
    backbone, _ = split_classifier(build_model("resnet32", 10), "classifier")
    backbone.eval()
    if info.distributed:
        ranks.broadcast_value(0, info)  # create the coordination group before timing
        dist.barrier()
    started = time.perf_counter()
    rows = sum(f.shape[0] for f, _ in ranks.sharded_batches(backbone, loader, views=args.views, device=torch.device("cpu"),
                                                            info=info, desc="extraction"))
    seconds = time.perf_counter() - started
    gather_seconds = None
    if info.distributed:  # the gather alone, payload of an ImageNet-width split of this many rows
        share = np.zeros((args.images * args.views // info.world_size, args.feature_dim), dtype=np.float16)
        dist.barrier()
        mark = time.perf_counter()
        dist.gather_object(share, [None] * info.world_size if info.is_main else None, dst=0, group=ranks._group(info))
        gather_seconds = time.perf_counter() - mark
    if info.is_main:
        record = {
            "command": " ".join(sys.argv), "world_size": info.world_size, "threads": torch.get_num_threads(),
            "images": args.images, "views": args.views, "batch_size": args.batch_size, "rows": rows,
            "seconds": round(seconds, 3), "images_per_second": round(args.images * args.views / seconds, 1),
            "gather_payload_mib": round(args.images * args.views * args.feature_dim * 2 / 2**20, 1),
            "gather_seconds": None if gather_seconds is None else round(gather_seconds, 3),
            "load_average": os.getloadavg(), "provenance": common.provenance(),
        }
        print(json.dumps({k: v for k, v in record.items() if k != "provenance"}))
        if args.out is not None:
            records = json.loads(args.out.read_text()) if args.out.is_file() else []
            _write(args.out, records + [record])
    if info.distributed:
        dist.destroy_process_group()


def _write(path: Path, records: list) -> None:
    from nolb.io import write_json

    write_json(path, records)


if __name__ == "__main__":
    main()
