"""Fashion-MNIST-LT from the standard IDX files (``*-ubyte`` or ``*-ubyte.gz``).

Default root: ``/usr/share/datasets/fashion-mnist``, where Debian's
``dataset-fashion-mnist`` package installs the four files.  The long-tailed training set
uses the same exponential profile and subsample as CIFAR-LT (n_max = 6000); validation
and test follow CIFAR-LT (:mod:`nolb.data.array_splits`): unused training images where a
class has enough, otherwise a seeded stratified slice of the official 10,000 test images
that leaves the reported test set.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from nolb.data.array_splits import assemble_array_splits
from nolb.data.profiles import long_tailed_counts, subsample_long_tailed
from nolb.errors import NolbError

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = (0.2860,), (0.3530,)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format), gzip-compressed or not, as a numpy array.

    The header is a magic number ``0x0000 <type> <ndim>`` followed by ``ndim`` big-endian
    int32 sizes; only unsigned-byte data (type 0x08) is accepted.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise NolbError(f"{path}: unreadable IDX file ({' '.join(str(exc).split())})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise NolbError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(shape)):
        raise NolbError(f"{path}: IDX size mismatch: header says {shape}, file has {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise NolbError(f"{root / (stem + '.gz')}: missing Fashion-MNIST file")


def read_fashion_mnist(root: str | Path | None = None):
    """Return ``(train_images, train_labels, test_images, test_labels, folder)``; images uint8 (N, 1, 28, 28)."""
    folder = Path(root or DEFAULT_ROOT).expanduser()
    if not folder.is_dir():
        raise NolbError(
            f"{folder}: Fashion-MNIST folder not found (pass root=...; Debian's dataset-fashion-mnist "
            f"package installs the files in {DEFAULT_ROOT})"
        )
    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise NolbError(f"{folder}: {split} images {images.shape} do not match labels {labels.shape}")
        if labels.max() >= 10:
            raise NolbError(f"{folder}: {split} label {labels.max()} out of range 0..9")
        arrays[split] = (images[:, None].copy(), labels)
    return (*arrays["train"], *arrays["test"], folder)


def build_fashion_mnist_lt(
    root: str | Path | None = None,
    imbalance_ratio: float = 100.0,
    profile: str = "exp",
    val_per_class: int = 100,
    seed: int = 0,
    val_seed: int = 1,
    val_source: str = "auto",
) -> dict:
    """Build Fashion-MNIST-LT; returns the fields of :class:`nolb.data.registry.LTData`.

    Args:
        root: folder with the four IDX files (default: Debian's install folder).
        imbalance_ratio: ``n_max / n_min`` with ``n_max = 6000``.
        profile: ``"exp"`` or ``"step"``.
        val_per_class: validation images per class (0: none).
        seed: subsample seed.
        val_seed: seed of the validation draw.
        val_source: ``"auto"``, ``"test"`` or ``"borrow_train"`` (as for CIFAR-LT).
    """
    x_train, y_train, x_test, y_test, folder = read_fashion_mnist(root)
    counts = long_tailed_counts(len(y_train) // 10, 10, imbalance_ratio, profile)
    kept, unused = subsample_long_tailed(y_train, counts, seed)
    names = list(CLASS_NAMES)
    fields = assemble_array_splits(x_train, y_train, x_test, y_test, names, kept, unused,
                                   val_per_class=val_per_class, seed=seed, val_seed=val_seed, val_source=val_source)
    fields["info"] = {"source": str(folder), "imbalance_ratio_requested": float(imbalance_ratio), "profile": profile,
                      **fields["info"]}
    return {**fields, "num_classes": 10, "class_counts": counts, "class_names": names, "preset": "mnist",
            "image_size": 28, "in_channels": 1, "mean": MEAN, "std": STD}
