"""Whole-batch augmentation of uint8 image tensors, on whatever device they live.

The same distribution as the per-image torchvision path (``RandomCrop(size, padding=p)``
then ``RandomHorizontalFlip()``), done with a few tensor ops per batch:

- crop: zero-pad the batch by ``p`` and draw per-sample offsets ``dy, dx`` uniform in
  ``{0, ..., 2p}``;
- flip: ``flip_n ~ Bernoulli(1/2)`` mirrors the column index of sample ``n``;
- both in one ``gather`` on the flattened padded images:
  ``out[n, c, i, j] = padded[n, c, dy_n + i, dx_n + (W - 1 - j if flip_n else j)]``;
- normalise: ``(x / 255 - mean) / std`` in one fused multiply-add, as float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nolb.data.transforms import AugmentSpec


def crop_and_flip(images: torch.Tensor, padding: int, flip: bool,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop after zero padding, then random horizontal flip, as one ``gather``.

    Draws ``(dy, dx)`` for every sample first, then the flips, so the result equals
    ``random_flip(random_crop(images, padding, g), g)`` for the same generator state.

    Args:
        images: ``(N, C, H, W)`` tensor (any dtype).
        padding: pixels of zero padding on every side (0: no crop).
        flip: flip each image horizontally with probability 1/2.
        generator: random source on ``images.device``.

    Returns:
        A tensor like ``images``.
    """
    n, c, h, w = images.shape
    device = images.device
    padded_width = w + 2 * padding
    padded = F.pad(images, (padding, padding, padding, padding)) if padding > 0 else images
    if padding > 0:
        offsets = torch.randint(0, 2 * padding + 1, (2, n), device=device, generator=generator)
    else:
        offsets = torch.zeros(2, n, dtype=torch.int64, device=device)
    rows = offsets[0, :, None] + torch.arange(h, device=device)  # (N, H)
    cols = torch.arange(w, device=device).expand(n, w)  # (N, W), mirrored where flipped
    if flip:
        flipped = torch.rand(n, device=device, generator=generator) < 0.5
        cols = torch.where(flipped[:, None], cols.flip(-1), cols)
    cols = offsets[1, :, None] + cols
    index = (rows[:, :, None] * padded_width + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop back to the input size after zero padding (per-sample offsets)."""
    if padding <= 0:
        return images
    return crop_and_flip(images, padding, False, generator)


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def normalization_constants(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(shift, scale)`` with ``(x / 255 - mean) / std = shift + scale * x``, shaped (1, C, 1, 1)."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return -mean_t / std_t, 1.0 / (255.0 * std_t)


def normalize(images: torch.Tensor, mean, std, constants: tuple[torch.Tensor, torch.Tensor] | None = None):
    """uint8 images to float32 ``(x / 255 - mean) / std``, per channel, in one fused multiply-add.

    ``constants`` (from :func:`normalization_constants`) skips rebuilding them per batch.
    """
    shift, scale = constants if constants is not None else normalization_constants(mean, std, images.device)
    return torch.addcmul(shift, images.to(torch.float32), scale)


def augment_batch(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply a batchable :class:`AugmentSpec` (crop, then flip, as torchvision orders them)."""
    if not spec.batchable:
        raise ValueError("augment_batch handles crop and flip only")
    if spec.crop_padding <= 0 and not spec.flip:
        return images
    return crop_and_flip(images, spec.crop_padding, spec.flip, generator)
