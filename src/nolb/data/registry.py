"""``build_data(name, **options)``: every dataset by name, as one :class:`LTData`."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from nolb.data.profiles import group_sizes
from nolb.data.splits import SPLIT_NAMES, check_disjoint
from nolb.errors import NolbError, did_you_mean

PRESET_NAMES = ("cifar", "mnist", "digits", "imagenet")


@dataclass
class LTData:
    """A long-tailed dataset: three splits and what a run needs to know about them.

    Attributes:
        train, val, test: torch Datasets (``val`` may be None when a dataset has none).
        num_classes: number of classes ``C``.
        class_counts: int64 tensor ``(C,)`` of training images per class.
        class_names: one name per class.
        preset: augmentation preset ("cifar" | "mnist" | "digits" | "imagenet").
        image_size: side of the network's input.
        in_channels: 1 or 3.
        mean, std: per-channel normalisation constants.
        info: a JSON-ready description for the run record (name, counts, imbalance ratio,
            split sizes, seed, source path, where validation and test come from, ...).
        splits: the image identities of each split, ``{"train": [...], "val": [...],
            "test": [...], "sources": {split: one line}}``, disjoint (checked by
            :func:`build_data`); :func:`nolb.data.write_splits` saves it as ``splits.json``.
    """

    train: Dataset
    val: Dataset | None
    test: Dataset
    num_classes: int
    class_counts: torch.Tensor
    class_names: list[str]
    preset: str
    image_size: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    info: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, Any] = field(default_factory=dict)


def _builders() -> dict[str, Callable[..., dict]]:
    from nolb.data.cifar import build_cifar_lt
    from nolb.data.digits import build_digits_lt
    from nolb.data.fashion_mnist import build_fashion_mnist_lt
    from nolb.data.image_folder import build_image_folder
    from nolb.data.list_file import build_benchmark_lists, build_list_file

    return {
        "cifar10_lt": partial(build_cifar_lt, 10),
        "cifar100_lt": partial(build_cifar_lt, 100),
        "fashion_mnist_lt": build_fashion_mnist_lt,
        "digits_lt": build_digits_lt,
        "imagenet_lt": partial(build_benchmark_lists, "imagenet_lt"),
        "places_lt": partial(build_benchmark_lists, "places_lt"),
        "inat2018": partial(build_benchmark_lists, "inat2018"),
        "list_file": build_list_file,
        "image_folder": build_image_folder,
    }


DATASET_NAMES = (
    "cifar10_lt", "cifar100_lt", "fashion_mnist_lt", "digits_lt",
    "imagenet_lt", "places_lt", "inat2018", "list_file", "image_folder",
)


def dataset_options(name: str) -> tuple[str, ...]:
    """The keyword options ``build_data(name, ...)`` accepts."""
    builder = _builder(name)
    return tuple(p.name for p in inspect.signature(builder).parameters.values()
                 if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def _builder(name: str) -> Callable[..., dict]:
    builders = _builders()
    if name not in builders:
        raise NolbError(f"data.name: unknown dataset {name!r}{did_you_mean(name, DATASET_NAMES)}; "
                        f"expected one of {', '.join(DATASET_NAMES)}")
    return builders[name]


def build_data(name: str, **options: Any) -> LTData:
    """Build a long-tailed dataset by name.

    Args:
        name: one of :data:`DATASET_NAMES`.
        **options: the dataset's options (``root``, ``imbalance_ratio``, ``profile``,
            ``val_per_class``, ``seed``, ``download``, ``train_list``, ...); an unknown one
            raises :class:`NolbError` listing the valid ones.

    Returns:
        An :class:`LTData`; ``info`` also holds the name, per-class counts, the actual
        imbalance ratio ``max / min``, split sizes and Many/Medium/Few group sizes.
    """
    builder = _builder(name)
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise NolbError(f"data.{unknown[0]}: unknown option for {name}; valid options: {', '.join(valid)}")
    fields = builder(**options)
    splits = fields["splits"]
    for split in SPLIT_NAMES:
        n = len(fields[split]) if fields[split] is not None else 0
        if len(splits.get(split) or ()) != n:
            raise NolbError(f"{name}: {split} has {n} images but {len(splits.get(split) or ())} identities")
    borrowing = fields["info"].get("val_source_option") == "borrow_train"  # asked for explicitly, recorded
    check_disjoint(splits, allow=(("train", "val"),) if borrowing else ())
    counts = torch.as_tensor(np.asarray(fields["class_counts"], dtype=np.int64))
    info = {
        "name": name,
        "num_classes": int(fields["num_classes"]),
        "counts": counts.tolist(),
        "imbalance_ratio": float(counts.max() / counts.min()) if counts.min() > 0 else float("inf"),
        "sizes": {split: len(fields[split]) if fields[split] is not None else 0
                  for split in ("train", "val", "test")},
        "groups": group_sizes(counts.numpy()),
        **fields["info"],
        "split_sources": dict(splits.get("sources", {})),
    }
    return LTData(
        train=fields["train"], val=fields["val"], test=fields["test"], num_classes=int(fields["num_classes"]),
        class_counts=counts, class_names=list(fields["class_names"]), preset=fields["preset"],
        image_size=int(fields["image_size"]), in_channels=int(fields["in_channels"]),
        mean=tuple(fields["mean"]), std=tuple(fields["std"]), info=info, splits=splits,
    )
