"""CIFAR-10-LT and CIFAR-100-LT from the official python-pickle layout.

Files (Krizhevsky 2009): ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch,
batches.meta}`` and ``<root>/cifar-100-python/{train, test, meta}``; each batch is a
pickled dict with ``data`` (uint8 ``(N, 3072)``, rows are CHW-flattened 32x32 RGB) and
``labels`` (``fine_labels`` for CIFAR-100).  The pickles are read with an unpickler that
only rebuilds numpy arrays, so a tampered file cannot run code.

The long-tailed training set is Cao et al.'s (see :mod:`nolb.data.profiles`).  The
validation split comes from the training images the subsample left unused for every class
that has enough of them, otherwise (class 0 at every IR > 1, every class at IR 1) from a
seeded stratified slice of the official test set that then leaves the reported test set
(:func:`nolb.data.split_plans.plan_validation`; docs/DATA.md).  Image identities: ``"train:<row>"``
and ``"test:<row>"`` of the official arrays (batches concatenated in file order).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from nolb.data.profiles import long_tailed_counts, subsample_long_tailed
from nolb.data.array_splits import assemble_array_splits
from nolb.errors import NolbError

CIFAR_MEAN = {10: (0.4914, 0.4822, 0.4465), 100: (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {10: (0.2470, 0.2435, 0.2616), 100: (0.2673, 0.2564, 0.2762)}

_LAYOUT = {
    10: {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "label_key": "labels",
        "names_key": "label_names",
        "torchvision": "CIFAR10",
    },
    100: {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "label_key": "fine_labels",
        "names_key": "fine_label_names",
        "torchvision": "CIFAR100",
    },
}

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise NolbError(f"{path}: missing CIFAR file")
    try:
        with open(path, "rb") as f:
            entry = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except Exception as exc:
        raise NolbError(f"{path}: unreadable CIFAR pickle ({' '.join(str(exc).split())})") from None
    if not isinstance(entry, dict):
        raise NolbError(f"{path}: expected a pickled dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _read_split(folder: Path, files: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in files:
        entry = _load_pickle(folder / name)
        if "data" not in entry or label_key not in entry:
            raise NolbError(f"{folder / name}: missing key 'data' or '{label_key}'")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise NolbError(f"{folder / name}: 'data' must be (N, 3072), got {data.shape}")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
        if len(labels[-1]) != len(data):
            raise NolbError(f"{folder / name}: {len(data)} images but {len(labels[-1])} labels")
    return np.concatenate(images), np.concatenate(labels)


def read_cifar(root: str | Path, num_classes: int, download: bool = False):
    """Read the official CIFAR pickles.

    Args:
        root: folder holding ``cifar-10-batches-py/`` or ``cifar-100-python/``.
        num_classes: 10 or 100.
        download: fetch the archive with torchvision's downloader when missing
            (needs internet; off by default).

    Returns:
        ``(train_images, train_labels, test_images, test_labels, class_names, folder)``;
        images are uint8 ``(N, 3, 32, 32)``.
    """
    layout = _LAYOUT[num_classes]
    root = Path(root).expanduser()
    folder = root / layout["folder"]
    if not folder.is_dir():
        if download:
            import torchvision.datasets as tvd

            root.mkdir(parents=True, exist_ok=True)
            getattr(tvd, layout["torchvision"])(str(root), train=True, download=True)
        else:
            missing = f"{folder}: CIFAR-{num_classes} folder not found (root {root}"
            raise NolbError(f"{missing}; pass download=True to fetch it)",
                            cli=f"{missing}; add data.download=true to fetch it, or --option download=true "
                                f"with nolb data info)")
    x_train, y_train = _read_split(folder, layout["train"], layout["label_key"])
    x_test, y_test = _read_split(folder, layout["test"], layout["label_key"])
    meta = _load_pickle(folder / layout["meta"])
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(layout["names_key"], [])]
    if len(names) != num_classes:
        names = [str(c) for c in range(num_classes)]
    for split, y in (("train", y_train), ("test", y_test)):
        if y.min() < 0 or y.max() >= num_classes:
            raise NolbError(f"{folder}: {split} label out of range 0..{num_classes - 1}")
    return x_train, y_train, x_test, y_test, names, folder


def build_cifar_lt(
    num_classes: int,
    root: str | Path | None = None,
    imbalance_ratio: float = 100.0,
    profile: str = "exp",
    val_per_class: int | None = None,
    seed: int = 0,
    val_seed: int = 1,
    download: bool = False,
    val_source: str = "auto",
) -> dict:
    """Build CIFAR-{10,100}-LT; returns the fields of :class:`nolb.data.registry.LTData`.

    Args:
        num_classes: 10 or 100.
        root: folder holding the official pickle folder.
        imbalance_ratio: ``n_max / n_min`` (100, 50, 10 in the literature).
        profile: ``"exp"`` (Cao et al.) or ``"step"``.
        val_per_class: validation images per class (default 100 for CIFAR-10, 20 for
            CIFAR-100; 0 for no validation split).
        seed: subsample seed (0 reproduces the published sets).
        val_seed: seed of the validation draw (kept separate so it never moves the train set).
        download: use torchvision's downloader when the files are missing.
        val_source: ``"auto"`` (unused training images, else a test slice), ``"test"``
            (all validation from the official test set) or ``"borrow_train"`` (explicit
            opt-in: the shortfall from the class's own training images, marked in info).
    """
    if root is None:
        folder_name = _LAYOUT[num_classes]["folder"]
        raise NolbError(f"data.root: required for cifar{num_classes}_lt (the folder holding {folder_name}/)")
    x_train, y_train, x_test, y_test, names, folder = read_cifar(root, num_classes, download)
    n_max = len(y_train) // num_classes  # the reference code's img_max
    counts = long_tailed_counts(n_max, num_classes, imbalance_ratio, profile)
    kept, unused = subsample_long_tailed(y_train, counts, seed)
    if val_per_class is None:
        val_per_class = 100 if num_classes == 10 else 20
    fields = assemble_array_splits(x_train, y_train, x_test, y_test, names, kept, unused,
                                   val_per_class=val_per_class, seed=seed, val_seed=val_seed, val_source=val_source)
    fields["info"] = {"source": str(folder), "imbalance_ratio_requested": float(imbalance_ratio), "profile": profile,
                      **fields["info"], "train_indices_sha": _digest(np.concatenate(kept))}
    return {**fields, "num_classes": num_classes, "class_counts": counts, "class_names": names, "preset": "cifar",
            "image_size": 32, "in_channels": 3, "mean": CIFAR_MEAN[num_classes], "std": CIFAR_STD[num_classes]}


def _digest(indices: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]
