"""Write images into the official CIFAR-10 python layout (``cifar-10-batches-py/``).

Useful to package your own 32x32 data so that nolb's CIFAR loaders (and any other code that
reads the official files) can use it, and used by nolb's tests and benchmarks to lay out the
real CIFAR-10 images.  The folder is built beside the destination and renamed into place, so
a reader never sees a half-written layout.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from nolb.errors import NolbError

TRAIN_BATCHES = 5


def _rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC uint8 -> (N, 3072) rows in the official CHW order."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def _check(name: str, images: np.ndarray, labels: np.ndarray, num_classes: int) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise NolbError(f"{name} images must be uint8 of shape (N, 32, 32, 3), got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise NolbError(f"{name} labels must have shape ({len(images)},), got {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise NolbError(f"{name} labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)
        handle.flush()
        os.fsync(handle.fileno())


def write_cifar10_batches(
    root: str | Path,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str],
) -> Path:
    """Write ``root/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta).

    Args:
        root: Folder that will hold ``cifar-10-batches-py/`` (created if needed).
        train_images, test_images: uint8 arrays of shape (N, 32, 32, 3), RGB, HWC.
        train_labels, test_labels: integer labels of shape (N,).
        class_names: One name per class.

    Returns:
        ``root``. An existing ``cifar-10-batches-py`` is left as it is (NolbError).
    """
    root = Path(root)
    target = root / "cifar-10-batches-py"
    if target.exists():
        raise NolbError(f"{target}: already exists; remove it first")
    train_labels = np.asarray(train_labels, dtype=np.int64)
    test_labels = np.asarray(test_labels, dtype=np.int64)
    _check("train", train_images, train_labels, len(class_names))
    _check("test", test_images, test_labels, len(class_names))
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-10-batches-py."))
    try:
        per_batch = -(-len(train_labels) // TRAIN_BATCHES)
        for b in range(TRAIN_BATCHES):
            part = slice(b * per_batch, (b + 1) * per_batch)
            _dump(staging / f"data_batch_{b + 1}",
                  {"batch_label": f"training batch {b + 1} of {TRAIN_BATCHES}",
                   "labels": train_labels[part].tolist(), "data": _rows(train_images[part])})
        _dump(staging / "test_batch", {"batch_label": "testing batch 1 of 1",
                                       "labels": test_labels.tolist(), "data": _rows(test_images)})
        _dump(staging / "batches.meta", {"label_names": [str(c) for c in class_names],
                                         "num_cases_per_batch": per_batch, "num_vis": 3072})
        os.chmod(staging, 0o755)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root
