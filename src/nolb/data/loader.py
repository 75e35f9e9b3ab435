"""``build_loader``: batches of normalised float images on the training device.

Two paths behind one interface (``__iter__`` yields ``(x, y)`` on ``device``, ``__len__``,
``set_epoch``):

- fast path, for a :class:`TensorImageDataset` with a batchable augmentation: the uint8
  images move to ``device`` once; each batch is one index into that tensor followed by
  :func:`nolb.data.batch_augment.augment_batch` and normalisation: no workers, no PIL.
- per-image path, for any other dataset (or AutoAugment/RandAugment, or the imagenet
  preset): a torch ``DataLoader`` applying the v2 pipeline of
  :func:`nolb.data.transforms.build_transform`.

Training loaders draw from a :mod:`nolb.data.samplers` sampler (the same list on every DDP
rank, sharded); evaluation loaders visit the dataset in order, rank ``r`` taking a
contiguous block, so over all ranks every image is seen exactly once.  ``drop_last``
defaults to True for training (never down to zero batches) and False for evaluation.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nolb.data.batch_augment import augment_batch, normalization_constants, normalize
from nolb.data.samplers import ContiguousShardSampler, build_sampler
from nolb.data.tensor_dataset import TensorImageDataset
from nolb.data.transforms import build_transform, resolve_augment
from nolb.errors import NolbError


def _labels_of(dataset: Dataset) -> torch.Tensor:
    for attr in ("labels", "targets"):
        if hasattr(dataset, attr):
            return torch.as_tensor(getattr(dataset, attr)).cpu()
    raise NolbError(f"{type(dataset).__name__}: a training loader needs dataset.labels or dataset.targets")


def _num_batches(num_items: int, batch_size: int, drop_last: bool) -> int:
    if drop_last and num_items >= batch_size:
        return num_items // batch_size
    return -(-num_items // batch_size)


class TensorBatchLoader:
    """The fast path: whole-batch augmentation of an in-memory uint8 tensor."""

    def __init__(self, dataset: TensorImageDataset, *, batch_size: int, sampler, spec, mean, std,
                 device: torch.device, seed: int, rank: int, drop_last: bool, channels_last: bool) -> None:
        self.dataset = dataset.to(device)
        self.batch_size, self.sampler, self.spec = batch_size, sampler, spec
        self.mean, self.std, self.device = mean, std, device
        self.seed, self.rank, self.drop_last, self.channels_last = seed, rank, drop_last, channels_last
        self.constants = normalization_constants(mean, std, device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: the sampler's list and the augmentation draws follow (seed, epoch, rank)."""
        self.epoch = int(epoch)
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return _num_batches(len(self.sampler), self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator(device=self.device)
        state = np.random.SeedSequence([self.seed, self.epoch, self.rank]).generate_state(1, dtype=np.uint64)[0]
        generator.manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.int64).to(self.device)
        for b in range(len(self)):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            images = self.dataset.images[index]
            images = augment_batch(images, self.spec, generator)
            x = normalize(images, self.mean, self.std, self.constants)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.dataset.labels[index]


class _Transformed(Dataset):
    def __init__(self, dataset: Dataset, transform) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), int(label)


class ImageBatchLoader:
    """The per-image path: a torch DataLoader with a v2 pipeline, batches moved to ``device``."""

    def __init__(self, dataset: Dataset, *, batch_size: int, sampler, transform, device: torch.device,
                 drop_last: bool, num_workers: int, channels_last: bool) -> None:
        self.sampler, self.device, self.channels_last = sampler, device, channels_last
        self.batches = _num_batches(len(sampler), batch_size, drop_last)
        self.loader = DataLoader(
            _Transformed(dataset, transform), batch_size=batch_size, sampler=sampler,
            drop_last=drop_last and len(sampler) >= batch_size, num_workers=num_workers,
            pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
        )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the sampler's list."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)


def build_loader(dataset: Dataset, *, batch_size: int, train: bool, preset: str, mean, std, augment: Any = None,
                 sampler: str = "instance", class_counts=None, seed: int = 0, device: str | torch.device = "cpu",
                 rank: int = 0, world_size: int = 1, drop_last: bool | None = None, num_workers: int = 0,
                 channels_last: bool = False, total_epochs: int | None = None, image_size: int | None = None):
    """A loader of ``(x, y)`` batches: float32 normalised images and int64 labels on ``device``.

    Args:
        dataset: a :class:`TensorImageDataset` (fast path) or any dataset of ``(image, label)``.
        batch_size: images per batch on this rank.
        train: True for a training loader (sampler, augmentation), False for evaluation.
        preset: "cifar" | "mnist" | "digits" | "imagenet" (see :mod:`nolb.data.transforms`).
        mean, std: per-channel normalisation.
        augment: override of the preset's augmentation (see ``resolve_augment``).
        sampler: training sampler name (see :mod:`nolb.data.samplers`).
        class_counts: number of classes is taken from its length (else from the labels).
        seed: seed of the sampler and the augmentation draws.
        device: where batches are produced.
        rank, world_size: DDP position.
        drop_last: default True for training, False for evaluation.
        num_workers: DataLoader workers (per-image path only).
        channels_last: return ``x`` in channels-last memory format.
        total_epochs: ``T`` of the progressive sampler.
        image_size: network input side for the per-image presets (default: the preset's).
    """
    if batch_size < 1:
        raise NolbError(f"batch_size: must be positive, got {batch_size}")
    device = torch.device(device)
    spec = resolve_augment(preset, train, augment)
    drop_last = train if drop_last is None else bool(drop_last)
    if train:
        labels = _labels_of(dataset)
        num_classes = len(class_counts) if class_counts is not None else int(labels.max()) + 1
        index_sampler = build_sampler(sampler, labels, num_classes, seed=seed, rank=rank,
                                      world_size=world_size, total_epochs=total_epochs)
    else:
        index_sampler = ContiguousShardSampler(len(dataset), rank, world_size)
    if isinstance(dataset, TensorImageDataset) and spec.batchable and preset != "imagenet":
        return TensorBatchLoader(dataset, batch_size=batch_size, sampler=index_sampler, spec=spec, mean=mean,
                                 std=std, device=device, seed=seed, rank=rank, drop_last=drop_last,
                                 channels_last=channels_last)
    transform = build_transform(preset, train, mean=mean, std=std, augment=augment, image_size=image_size)
    return ImageBatchLoader(dataset, batch_size=batch_size, sampler=index_sampler, transform=transform,
                            device=device, drop_last=drop_last, num_workers=num_workers, channels_last=channels_last)
