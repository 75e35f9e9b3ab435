"""Shared pytest fixtures: the repository root, the shared real data, CIFAR folders.

``shared_data`` is ``<repo root>/../shared/data`` (CI clones the repository with
``shared/`` beside it); tests that need it are skipped with a reason when it is absent.
``cifar10_root`` writes the real CIFAR-10 images of ``shared/data/cifar10`` (uint8 npz
chunks) into the official ``cifar-10-batches-py`` pickle layout, so that the real CIFAR
reader is what gets tested.  ``cifar100_root`` writes a tiny synthetic
``cifar-100-python`` folder (10 training and 2 test images per class) in the official format.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml``)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; skips the test when it is absent."""
    path = REPO_ROOT.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found")
    return path


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.fixture(scope="session")
def cifar10_root(shared_data: Path, tmp_path_factory) -> Path:
    """A folder holding ``cifar-10-batches-py/`` built from the real shared CIFAR-10 images.

    The 50,000 training images are put in a fixed random order (as in the official
    batches, which are not sorted by class) and split into five batches of 10,000; data
    rows are the CHW-flattened uint8 images, labels a list of ints.
    """
    source = shared_data / "cifar10"
    files = [source / f"train_{i}.npz" for i in range(4)] + [source / "test.npz"]
    missing = [f for f in files if not f.is_file()]
    if missing:
        pytest.skip(f"CIFAR-10 chunk {missing[0]} not found")
    parts = [np.load(f) for f in files[:4]]
    x_train = np.concatenate([p["x"] for p in parts])
    y_train = np.concatenate([p["y"] for p in parts]).astype(np.int64)
    test = np.load(files[4])
    classes = [str(c) for c in test["classes"]]
    order = np.random.RandomState(0).permutation(len(y_train))
    x_train, y_train = x_train[order], y_train[order]

    from nolb.data import write_cifar10_batches

    root = tmp_path_factory.mktemp("cifar10")
    write_cifar10_batches(root, x_train, y_train, test["x"], test["y"], classes)
    return root


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory) -> Path:
    """A tiny synthetic ``cifar-100-python/`` (10 train, 2 test random images per class)."""
    rng = np.random.RandomState(123)
    root = tmp_path_factory.mktemp("cifar100")
    folder = root / "cifar-100-python"
    folder.mkdir()
    for split, per_class in (("train", 10), ("test", 2)):
        labels = rng.permutation(np.repeat(np.arange(100), per_class))
        data = rng.randint(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        _dump(folder / split, {"filenames": [f"img_{i}.png" for i in range(len(labels))], "batch_label": split,
                               "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(), "data": data})
    _dump(folder / "meta", {"fine_label_names": [f"class_{c:02d}" for c in range(100)],
                            "coarse_label_names": [f"super_{c:02d}" for c in range(20)]})
    return root
