"""Prepare the carry folder for the GPU recipe (benchmarks/gpu_cifar10_lt.py) within the device tool's 64 MiB.

The device machine receives only the repository (plus carried ignored paths, 64 MiB in
all), not ../shared.  This script builds CIFAR-10-LT IR 100 from the real shared images
with ``nolb.data.build_data`` (Cao et al.'s subsample, 12,406 training images; the
validation split of 1,000 unused training images) and writes one npz file:

* ``train_x`` uint8 (12406, 3, 32, 32), ``train_y``: the whole LT training set;
* ``val_x``, ``val_y``: the validation split (100 per class), for model selection;
* ``test_x``, ``test_y``: a balanced part of the official test set (``--test-per-class``,
  default 500 of the 1,000 per class, the first ones in file order per class);
* ``class_names``, ``class_counts``, ``mean``, ``std`` and ``info`` (JSON: source, seeds,
  the train-index digest of nolb.data, the commit).

    python benchmarks/gpu_carry.py                # -> .device-carry/cifar10_lt_ir100.npz

``.device-carry/`` is git-ignored; name it in the device tool's ``carry`` list.
``--synthetic`` writes a tiny random dataset of the same layout (tests).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CARRY_DIR = common.REPO_ROOT / ".device-carry"
CARRY_FILE = "cifar10_lt_ir100.npz"
LIMIT_BYTES = 64 * 2**20
REPO_ALLOWANCE = 4 * 2**20  # the working tree itself travels too


def balanced_part(labels: np.ndarray, per_class: int, num_classes: int) -> np.ndarray:
    """Indices of the first ``per_class`` images of every class, in file order."""
    index = [np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]
    short = [c for c, i in enumerate(index) if len(i) < per_class]
    if short:
        raise ValueError(f"classes {short} have fewer than {per_class} test images")
    return np.sort(np.concatenate(index))


def build_arrays(args: argparse.Namespace) -> dict:
    if args.synthetic:
        rng = np.random.default_rng(0)
        counts = [40, 24, 14, 8, 5]
        y = np.repeat(np.arange(len(counts)), counts)
        yv = np.repeat(np.arange(len(counts)), 4)
        yt = np.repeat(np.arange(len(counts)), args.test_per_class)
        return {
            "train_x": rng.integers(0, 256, (len(y), 3, 32, 32), dtype=np.uint8), "train_y": y,
            "val_x": rng.integers(0, 256, (len(yv), 3, 32, 32), dtype=np.uint8), "val_y": yv,
            "test_x": rng.integers(0, 256, (len(yt), 3, 32, 32), dtype=np.uint8), "test_y": yt,
            "class_names": np.array([f"class{c}" for c in range(len(counts))]), "class_counts": np.array(counts),
            "mean": np.array([0.4914, 0.4822, 0.4465]), "std": np.array([0.2470, 0.2435, 0.2616]),
            "info": json.dumps({"name": "synthetic", "commit": common.short_commit()}),
        }
    data = common.cifar10_lt(100)
    test_y = data.test.labels.numpy()
    keep = balanced_part(test_y, args.test_per_class, data.num_classes)
    info = {k: data.info.get(k) for k in ("name", "imbalance_ratio", "seed", "val_seed", "val_per_class",
                                           "train_indices_sha", "counts")}
    info.update(source="../shared/data/cifar10 (JPEG-re-encoded CIFAR-10, see its README) via nolb.data.build_data",
                test=f"first {args.test_per_class} test images per class of the official test set",
                commit=common.short_commit())
    return {
        "train_x": data.train.images.numpy(), "train_y": data.train.labels.numpy(),
        "val_x": data.val.images.numpy(), "val_y": data.val.labels.numpy(),
        "test_x": data.test.images.numpy()[keep], "test_y": test_y[keep],
        "class_names": np.array(list(data.class_names)), "class_counts": data.class_counts.numpy(),
        "mean": np.array(data.mean), "std": np.array(data.std), "info": json.dumps(info),
    }


def load_carry(path: Path):
    """The carried npz as an ``LTData`` (train / val / test ``TensorImageDataset`` splits)."""
    import torch

    from nolb.data import TensorImageDataset
    from nolb.data.registry import LTData

    with np.load(path) as f:
        a = {k: f[k] for k in f.files}
    names = [str(n) for n in a["class_names"]]
    info = json.loads(str(a["info"]))
    counts = np.bincount(a["train_y"], minlength=len(names))
    if not np.array_equal(counts, a["class_counts"]):
        raise ValueError(f"{path}: class_counts do not match the training labels")
    return LTData(
        train=TensorImageDataset(a["train_x"], a["train_y"], names),
        val=TensorImageDataset(a["val_x"], a["val_y"], names),
        test=TensorImageDataset(a["test_x"], a["test_y"], names),
        num_classes=len(names), class_counts=torch.as_tensor(counts, dtype=torch.int64), class_names=names,
        preset="cifar", image_size=32, in_channels=3, mean=tuple(float(v) for v in a["mean"]),
        std=tuple(float(v) for v in a["std"]),
        info={**info, "carry_file": path.name, "sizes": {"train": int(len(a["train_y"])), "val": int(len(a["val_y"])),
                                                         "test": int(len(a["test_y"]))}},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=CARRY_DIR)
    parser.add_argument("--test-per-class", type=int, default=500)
    parser.add_argument("--synthetic", action="store_true", help="tiny random data of the same layout (tests)")
    args = parser.parse_args(argv)
    arrays = build_arrays(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / CARRY_FILE
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    size = path.stat().st_size
    total = sum(p.stat().st_size for p in args.out_dir.rglob("*") if p.is_file())
    print(f"wrote {path}: {size / 2**20:.1f} MiB (folder {total / 2**20:.1f} MiB); train {len(arrays['train_y'])}, "
          f"val {len(arrays['val_y'])}, test {len(arrays['test_y'])} images")
    if total + REPO_ALLOWANCE > LIMIT_BYTES:
        print(f"error: {total / 2**20:.1f} MiB + the working tree exceeds the device tool's 64 MiB; "
              f"lower --test-per-class", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
