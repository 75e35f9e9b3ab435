"""List-file datasets: ImageNet-LT, Places-LT, iNaturalist 2018 (OLTR lists) and custom lists.

A list file has one image per line, ``<relative/path> <integer label>`` (the path may
contain spaces: the label is the last field).  Blank lines are skipped; anything else that
does not parse is an error naming the file and line.  Class counts come from the
training list.  ``relabel_by_frequency=True`` renumbers classes by descending training
count (ties keep the original order), so class 0 is the head and class C-1 the tail; the
mapping ``new_label = mapping[old_label]`` is returned in ``info`` and can be saved with
:func:`write_label_mapping`.

Image identities are the listed paths (relative to the image root); a path listed in two
splits is an error.  Without a test list, the validation list is split per class into a
selection half and a reported test half (``missing_test="carve"``, the default, seeded by
``carve_seed``) or the build stops (``missing_test="error"``): validation is never
reported as test.  iNaturalist 2018 publishes only train and val lists, so its val list is
carved that way: 1 image per class selects, 2 are reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nolb.data.image_files import ImageFileDataset
from nolb.data.split_plans import fill_missing_test
from nolb.errors import NolbError
from nolb.io import write_json

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

BENCHMARKS = {
    # name: (classes, train list, val list, test list)   (iNat2018: val carved into val + test)
    "imagenet_lt": (1000, "ImageNet_LT_train.txt", "ImageNet_LT_val.txt", "ImageNet_LT_test.txt"),
    "places_lt": (365, "Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"),
    "inat2018": (8142, "iNaturalist18_train.txt", "iNaturalist18_val.txt", None),
}


def read_list_file(path: str | Path, num_classes: int | None = None) -> list[tuple[str, int]]:
    """Parse ``<relative/path> <label>`` lines.

    Args:
        path: the list file.
        num_classes: when given, labels must lie in ``0..num_classes-1``.

    Returns:
        ``(relative path, label)`` pairs in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise NolbError(f"{path}: list file not found")
    samples = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError:
            raise NolbError(f"{path}: not a UTF-8 text file") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(None, 1)
        if len(fields) != 2:
            raise NolbError(f"{path}:{number}: expected '<relative/path> <label>', got {line.strip()[:80]!r}")
        try:
            label = int(fields[1])
        except ValueError:
            raise NolbError(f"{path}:{number}: label {fields[1]!r} is not an integer") from None
        if label < 0 or (num_classes is not None and label >= num_classes):
            bound = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            raise NolbError(f"{path}:{number}: label {label} out of range {bound}")
        samples.append((fields[0], label))
    if not samples:
        raise NolbError(f"{path}: list file has no entries")
    return samples


def frequency_order_mapping(counts) -> np.ndarray:
    """``mapping[old] = new`` with new labels in descending count order (stable on ties)."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    mapping = np.empty(len(order), dtype=np.int64)
    mapping[order] = np.arange(len(order))
    return mapping


def write_label_mapping(path: str | Path, mapping, class_names=None) -> None:
    """Save a relabelling as JSON: ``{"new_label_of_old": [...], "old_label_of_new": [...]}``."""
    mapping = np.asarray(mapping, dtype=np.int64)
    payload = {"new_label_of_old": mapping.tolist(), "old_label_of_new": np.argsort(mapping).tolist()}
    if class_names is not None:
        payload["class_names"] = list(class_names)
    write_json(path, payload)


def _check_root(root) -> Path:
    if root is None:
        raise NolbError("data.root: the image root folder is required")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise NolbError(f"{root}: image root folder not found")
    return root


def build_list_file(root=None, train_list=None, val_list=None, test_list=None, num_classes: int | None = None,
                    relabel_by_frequency: bool = False, preset: str = "imagenet", image_size: int = 224,
                    missing_test: str = "carve", carve_seed: int = 0) -> dict:
    """A dataset from list files; returns the fields of :class:`nolb.data.registry.LTData`.

    Args:
        root: image root folder the listed paths are relative to.
        train_list: training list (required); class counts come from it.
        val_list, test_list: optional lists (labels checked against the training classes).
        num_classes: number of classes (default: largest training label + 1).
        relabel_by_frequency: renumber classes by descending training count.
        preset: augmentation preset (default "imagenet").
        image_size: network input size.
        missing_test: without a test list, ``"carve"`` half of each class of the validation
            list into the test split, or ``"error"``.
        carve_seed: seed of that carving.
    """
    root = _check_root(root)
    if train_list is None:
        raise NolbError("data.train_list: a training list file is required")
    train = read_list_file(train_list, num_classes)
    if num_classes is None:
        num_classes = max(label for _, label in train) + 1
    counts = np.bincount([label for _, label in train], minlength=num_classes)
    if (counts == 0).any():
        raise NolbError(f"{train_list}: class {int(np.argmin(counts))} has no training image")
    splits = {"train": train}
    lists = {"train": train_list, "val": val_list, "test": test_list}
    for split in ("val", "test"):
        splits[split] = read_list_file(lists[split], num_classes) if lists[split] is not None else None
    sources = fill_missing_test(splits, {split: f"list {lst}" for split, lst in lists.items()}, missing_test,
                                carve_seed, "pass data.test_list=FILE")
    mapping = frequency_order_mapping(counts) if relabel_by_frequency else np.arange(num_classes)
    names = [str(old) for old in np.argsort(mapping)]
    datasets = {
        split: ImageFileDataset(root, [(p, int(mapping[y])) for p, y in samples], names) if samples else None
        for split, samples in splits.items()
    }
    info = {"source": str(root), "lists": {split: str(p) for split, p in lists.items() if p},
            "relabel_by_frequency": bool(relabel_by_frequency), "missing_test": missing_test,
            "val_source": sources["val"], "test_source": sources["test"]}
    if relabel_by_frequency:
        info["label_mapping"] = mapping.tolist()
    ids = {split: [p for p, _ in samples or []] for split, samples in splits.items()}
    return {**datasets, "splits": {**ids, "sources": sources},
            "num_classes": int(num_classes), "class_counts": counts[np.argsort(mapping)].tolist(),
            "class_names": names, "preset": preset, "image_size": image_size, "in_channels": 3,
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "info": info}


def build_benchmark_lists(benchmark: str, root=None, lists_dir=None, train_list=None, val_list=None, test_list=None,
                          relabel_by_frequency: bool = False, image_size: int = 224, missing_test: str = "carve",
                          carve_seed: int = 0) -> dict:
    """ImageNet-LT, Places-LT or iNaturalist 2018 from the OLTR list files.

    Args:
        benchmark: "imagenet_lt" | "places_lt" | "inat2018".
        root: image root (ImageNet-2012 / Places365 / iNat2018) the listed paths are relative to.
        lists_dir: folder with the standard list files (default ``root``); ``train_list``,
            ``val_list``, ``test_list`` override single files.
        relabel_by_frequency: renumber classes by descending training count.
        image_size: network input size.
        missing_test, carve_seed: as for :func:`build_list_file` (iNaturalist 2018 has no
            test list: its val list is carved into validation and test).
    """
    num_classes, train_name, val_name, test_name = BENCHMARKS[benchmark]
    folder = Path(lists_dir if lists_dir is not None else (root if root is not None else "."))
    fields = build_list_file(
        root=root,
        train_list=train_list or folder / train_name,
        val_list=val_list or (folder / val_name if val_name else None),
        test_list=test_list or (folder / test_name if test_name else None),
        num_classes=num_classes, relabel_by_frequency=relabel_by_frequency, image_size=image_size,
        missing_test=missing_test, carve_seed=carve_seed,
    )
    return fields
