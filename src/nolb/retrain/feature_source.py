"""The frozen backbone of a trained model and its features on each split, cached or not.

:class:`FeatureSource` splits a model into backbone and original head, and gives the
features of the ``train`` split (K augmented views), ``val`` and ``test`` (one plain
view each), each computed on first request only: a selection that never asks for
``test`` never reads the test images.  With a ``cache_dir`` they go to a
:class:`~nolb.retrain.features.FeatureCache` and are reused on rerun.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.retrain.backbone import split_classifier
from nolb.retrain.inference import resolve_extract_dtype
from nolb.retrain.features import FeatureCache, FeatureSplit, labels_fingerprint, model_fingerprint
from nolb.retrain.online import reestimate_batchnorm

SPLITS = ("train", "val", "test")


def feature_dtype(split: str) -> torch.dtype:
    """How split ``split`` is cached: the K augmented training views in float16 (half the memory;
    the heads train on them), validation and test in float32, so that selection and the reported
    test rows score exactly the features the float32 model computes (``nolb predict`` gives the
    report's predictions)."""
    return torch.float16 if split == "train" else torch.float32


class FeatureSource:
    """Features of a frozen backbone on the splits of an ``LTData``.

    Args:
        model: the trained classifier (left unchanged).
        data: an ``LTData`` (train/val/test datasets, preset, mean, std, class counts).
        classifier: attribute of the model's final layer (``"fc"`` for torchvision ResNets).
        views: augmented views of the training split.
        cache_dir: folder of the feature cache; None keeps features in memory only.
        batch_size: images per backbone batch.
        device: where the backbone runs.
        seed: seeds the augmentation of the training views.
        shift_bn: re-estimate BatchNorm statistics on the training split first (MiSLAS);
            done on a copy of the backbone, never on ``model``.
        augment: training augmentation override (``None``: the preset's default).
        extract_dtype: precision of the backbone on the (float16-stored) training views:
            ``auto`` (bf16 autocast on a CPU with native bf16, else float32), ``float32`` or
            ``bfloat16`` (:func:`nolb.retrain.inference.resolve_extract_dtype`); validation and
            test are always extracted in exact float32.
    """

    def __init__(
        self, model: nn.Module, data: Any, *, classifier: str = "classifier", views: int = 1,
        cache_dir: str | Path | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
        seed: int = 0, shift_bn: bool = False, augment: Any = None, extract_dtype: str = "auto",
    ) -> None:
        if views < 1:
            raise NolbError(f"retrain.views: must be >= 1, got {views}")
        self.extract_dtype = resolve_extract_dtype(extract_dtype, device)
        self.data, self.views, self.batch_size, self.device = data, int(views), int(batch_size), device
        self.seed, self.augment, self.classifier = int(seed), augment, classifier
        backbone, self.original_head = split_classifier(model, classifier)
        if shift_bn:
            backbone = copy.deepcopy(backbone).to(device)
            reestimate_batchnorm(backbone, self.loader("train", train=True), device)
        self.backbone = backbone.to(device).eval()
        self.shift_bn = bool(shift_bn)
        self.cache = FeatureCache(cache_dir) if cache_dir is not None else None
        self._splits: dict[str, FeatureSplit] = {}
        self._weights_hash: str | None = None
        self.reused: dict[str, bool] = {}

    @property
    def class_counts(self) -> torch.Tensor:
        return torch.as_tensor(self.data.class_counts, dtype=torch.long)

    @property
    def num_classes(self) -> int:
        return int(self.data.num_classes)

    def dataset(self, split: str) -> Any:
        if split not in SPLITS:
            raise NolbError(f"unknown split {split!r}, expected one of {SPLITS}")
        dataset = getattr(self.data, split)
        if dataset is None:
            raise NolbError(f"the dataset has no {split!r} split")
        return dataset

    def has(self, split: str) -> bool:
        return getattr(self.data, split, None) is not None

    def loader(self, split: str, *, train: bool, sampler: str = "instance", seed: int | None = None):
        """A loader over ``split``: augmented (``train=True``, every image once per epoch) or plain."""
        from nolb.data import build_loader

        return build_loader(
            self.dataset(split), batch_size=self.batch_size, train=train, preset=self.data.preset,
            mean=self.data.mean, std=self.data.std, image_size=self.data.image_size,
            augment=self.augment if train else None, sampler=sampler,
            class_counts=self.data.class_counts, seed=self.seed if seed is None else seed, device=self.device,
            drop_last=False,
        )

    def fingerprint(self, split: str) -> dict:
        """What determines the features of ``split``: weights, images, views, transform."""
        if self._weights_hash is None:
            self._weights_hash = model_fingerprint(self.backbone)
        dataset = self.dataset(split)
        labels = getattr(dataset, "labels", None)
        views = self.views if split == "train" else 1
        return {
            "backbone_sha256": self._weights_hash,
            "classifier_attribute": self.classifier,
            "shift_bn": self.shift_bn,
            "split": split,
            "num_images": len(dataset),
            "labels_sha256": labels_fingerprint(labels) if labels is not None else None,
            "data_info": getattr(self.data, "info", {}),
            "views": views,
            "dtype": str(feature_dtype(split)).removeprefix("torch."),
            "compute_dtype": self.compute_dtype(split),
            "transform": {
                "augmented": split == "train", "preset": self.data.preset, "augment": repr(self.augment),
                "mean": list(self.data.mean), "std": list(self.data.std), "image_size": self.data.image_size,
                "batch_size": self.batch_size, "seed": self.seed,
            },
        }

    def compute_dtype(self, split: str) -> str:
        """Precision of the backbone on ``split``: :attr:`extract_dtype` for the training views, else float32."""
        return self.extract_dtype if split == "train" else "float32"

    def remember(self, name: str, split: FeatureSplit, *, reused: bool) -> None:
        """Hold ``split`` as the features of ``name`` (extracted elsewhere, e.g. over all torchrun ranks)."""
        self._splits[name], self.reused[name] = split, reused

    def split(self, name: str) -> FeatureSplit:
        """Features of split ``name`` (computed, loaded from the cache, or remembered)."""
        if name not in self._splits:
            cached = self.cache.load(name, self.fingerprint(name)) if self.cache is not None else None
            if cached is not None:
                self.remember(name, cached, reused=True)
            else:
                self.store(name, self.batches(name))
        return self._splits[name]

    def store(self, name: str, batches: Iterable) -> FeatureSplit:
        """Hold the features of ``batches`` (from :meth:`batches`) as split ``name``, written to the cache if any."""
        views = self.views if name == "train" else 1
        if self.cache is not None:
            split = self.cache.write(name, self.fingerprint(name), batches, views=views)
        else:
            chunks = list(batches)
            features = torch.cat([torch.from_numpy(f) for f, _ in chunks])
            split = FeatureSplit(features, torch.cat([torch.from_numpy(y) for _, y in chunks]), features.shape[0] // views)
        self.remember(name, split, reused=False)
        return split

    def batches(self, name: str, info: Any = None):
        """``(features, labels)`` numpy pairs of split ``name`` (:func:`feature_dtype`) in row order, on rank 0 of ``info``
        (default: this process alone); the same batches and draws at any world size."""
        from nolb.engine.distributed import DistInfo
        from nolb.retrain.ranks import sharded_batches

        views = self.views if name == "train" else 1
        return sharded_batches(self.backbone, self.loader(name, train=name == "train"), views=views,
                               device=self.device, info=info or DistInfo(), desc=f"features of {name}",
                               seed=self.seed, dtype=feature_dtype(name), compute_dtype=self.compute_dtype(name),
                               fast=name == "train")  # the float16 training views only: val/test stay exact
