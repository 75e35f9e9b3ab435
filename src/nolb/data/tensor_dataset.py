"""An image dataset held entirely in memory as one uint8 tensor (the fast path's input)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from nolb.errors import NolbError


class TensorImageDataset(Dataset):
    """Images as a uint8 ``(N, C, H, W)`` tensor plus int64 labels, all in memory.

    ``build_loader`` recognises this class and augments whole batches on the tensor's
    device instead of running per-image transforms.

    Args:
        images: uint8 array or tensor, ``(N, C, H, W)``.
        labels: integer labels, ``(N,)``.
        class_names: optional names, one per class.
    """

    def __init__(self, images, labels, class_names: Sequence[str] | None = None) -> None:
        images = torch.as_tensor(images)
        labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).to(torch.int64)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise NolbError(f"images must be a uint8 (N, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            raise NolbError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.to(images.device)
        self.class_names = list(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    @property
    def targets(self) -> list[int]:
        """Labels as a Python list (torchvision's attribute name)."""
        return self.labels.tolist()

    def subset(self, indices) -> "TensorImageDataset":
        """A new dataset with the images at ``indices`` (copied, in that order)."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.images.device)
        return TensorImageDataset(self.images[index], self.labels[index], self.class_names)

    def to(self, device: str | torch.device) -> "TensorImageDataset":
        """The same dataset with its tensors on ``device`` (self when already there)."""
        device = torch.device(device)
        here = self.images.device
        if here.type == device.type and device.index in (None, here.index):
            return self
        return TensorImageDataset(self.images.to(device), self.labels.to(device), self.class_names)
