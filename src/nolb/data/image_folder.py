"""ImageFolder trees (torchvision's convention): ``<root>/<split>/<class name>/<image>``.

``train/`` is required; ``val/`` and ``test/`` are optional but one of them must exist.
Without ``test/``, the ``val/`` images are split per class, seeded: ``floor(n_c / 2)`` stay
validation (selection) and the rest become the reported test split
(``missing_test="carve"``, the default), or the build stops with a one-line error
(``missing_test="error"``): validation is never reported as test.  Image identities are
paths relative to the root (``"train/cat/001.jpg"``).  Classes are the sub-folders of
``train/`` sorted by name (torchvision's ``find_classes``); files count when their
extension is one of torchvision's ``IMG_EXTENSIONS``.  A class folder of ``val/``/``test/`` unknown to
``train/`` is an error; class counts come from ``train/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS

from nolb.data.image_files import ImageFileDataset
from nolb.data.list_file import IMAGENET_MEAN, IMAGENET_STD, frequency_order_mapping
from nolb.data.split_plans import fill_missing_test
from nolb.errors import NolbError


def scan_image_folder(folder: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """``(path relative to folder, label)`` for every image, classes and files sorted by name."""
    samples = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        if entry.name not in class_to_idx:
            raise NolbError(f"{entry}: class folder not present in the training split")
        for file in sorted(entry.rglob("*")):
            if file.is_file() and file.name.lower().endswith(IMG_EXTENSIONS):
                samples.append((str(file.relative_to(folder)), class_to_idx[entry.name]))
    return samples


def build_image_folder(root=None, relabel_by_frequency: bool = False, preset: str = "imagenet",
                       image_size: int = 224, missing_test: str = "carve", carve_seed: int = 0) -> dict:
    """A dataset from an ImageFolder tree; returns the fields of :class:`nolb.data.registry.LTData`.

    Args:
        root: folder holding ``train/`` (and ``val/``, ``test/``).
        relabel_by_frequency: renumber classes by descending training count.
        preset: augmentation preset.
        image_size: network input size.
        missing_test: without ``test/``, ``"carve"`` half of each class of ``val/`` into the
            test split, or ``"error"``.
        carve_seed: seed of that carving.
    """
    if root is None:
        raise NolbError("data.root: the ImageFolder root is required")
    root = Path(root).expanduser()
    if not (root / "train").is_dir():
        raise NolbError(f"{root / 'train'}: ImageFolder training folder not found")
    names = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not names:
        raise NolbError(f"{root / 'train'}: no class folders")
    class_to_idx = {name: i for i, name in enumerate(names)}
    splits = {s: [(f"{s}/{p}", y) for p, y in scan_image_folder(root / s, class_to_idx)] if (root / s).is_dir()
              else None for s in ("train", "val", "test")}
    sources = fill_missing_test(splits, {s: f"{root / s}/" for s in splits}, missing_test, carve_seed,
                                f"add a {root / 'test'}/ folder")
    counts = np.bincount([y for _, y in splits["train"]], minlength=len(names))
    if (counts == 0).any():
        raise NolbError(f"{root / 'train' / names[int(np.argmin(counts))]}: class folder has no image")
    mapping = frequency_order_mapping(counts) if relabel_by_frequency else np.arange(len(names))
    new_names = [names[old] for old in np.argsort(mapping)]
    datasets = {s: ImageFileDataset(root, [(p, int(mapping[y])) for p, y in v], new_names)
                if v else None for s, v in splits.items()}
    info = {"source": str(root), "relabel_by_frequency": bool(relabel_by_frequency), "missing_test": missing_test,
            "val_source": sources["val"], "test_source": sources["test"]}
    if relabel_by_frequency:
        info["label_mapping"] = mapping.tolist()
    ids = {s: [p for p, _ in v or []] for s, v in splits.items()}
    return {**datasets, "splits": {**ids, "sources": sources}, "num_classes": len(names),
            "class_counts": counts[np.argsort(mapping)].tolist(), "class_names": new_names, "preset": preset, "image_size": image_size, "in_channels": 3,
            "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "info": info}
