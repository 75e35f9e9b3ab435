"""Augmentation presets, shared by the fast batch path and the per-image v2 path.

=========  ========================================  ============================  ==========
preset     train                                     eval                          fast path
=========  ========================================  ============================  ==========
cifar      pad-4 random crop, horizontal flip        normalise                     yes
mnist      pad-2 random crop, no flip                normalise                     yes
digits     pad-1 random crop (1-pixel shift), no     normalise                     yes
           flip
imagenet   RandomResizedCrop(224), flip,             Resize(256), CenterCrop(224)  no
           ColorJitter(0.4, 0.4, 0.4)
=========  ========================================  ============================  ==========

Flips: a mirrored digit is another symbol (or none), so "mnist" and "digits" never flip.
Fashion-MNIST uses "mnist": clothes would survive a mirror, but the preset stays the
conservative one for its digit namesake; pass ``augment={"flip": True}`` to add it.
Crops pad with zeros, as torchvision's ``RandomCrop(padding=p)`` does.  CIFAR can also
take ``policy="autoaugment"`` (the CIFAR10 policy) or ``"randaugment"``; these run on
the per-image path.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torchvision.transforms import v2

from nolb.errors import NolbError

POLICY_NAMES = ("autoaugment", "randaugment")


@dataclass(frozen=True)
class AugmentSpec:
    """What a training loader does to each image.

    Attributes:
        crop_padding: zero padding for the random crop back to the input size (0 = none).
        flip: random horizontal flip with probability 1/2.
        policy: None, "autoaugment" or "randaugment" (per-image path only).
        resized_crop: RandomResizedCrop + ColorJitter pipeline of the imagenet preset.
    """

    crop_padding: int = 0
    flip: bool = False
    policy: str | None = None
    resized_crop: bool = False

    @property
    def batchable(self) -> bool:
        """True when whole-batch tensor ops reproduce it exactly (crop + flip only)."""
        return self.policy is None and not self.resized_crop


PRESETS = {
    "cifar": AugmentSpec(crop_padding=4, flip=True),
    "mnist": AugmentSpec(crop_padding=2, flip=False),
    "digits": AugmentSpec(crop_padding=1, flip=False),
    "imagenet": AugmentSpec(flip=True, resized_crop=True),
}
NO_AUGMENT = AugmentSpec()


def resolve_augment(preset: str, train: bool, augment: Any = None) -> AugmentSpec:
    """The augmentation a loader applies.

    Args:
        preset: one of :data:`PRESETS`.
        train: False gives no augmentation whatever ``augment`` says.
        augment: None (the preset's default), False / "none" (no augmentation), a policy
            name ("autoaugment" / "randaugment", added to the preset), or a dict overriding
            :class:`AugmentSpec` fields (``crop_padding``, ``flip``, ``policy``).
    """
    if preset not in PRESETS:
        raise NolbError(f"preset: unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if not train or augment is False or augment == "none":
        return NO_AUGMENT
    spec = PRESETS[preset]
    if augment is None or augment is True:
        return spec
    if isinstance(augment, str):
        augment = {"policy": augment}
    if not isinstance(augment, dict):
        raise NolbError(f"augment: expected None, 'none', a policy name or a dict, got {augment!r}")
    valid = ("crop_padding", "flip", "policy")
    for key in augment:
        if key not in valid:
            raise NolbError(f"augment.{key}: unknown key; valid keys: {', '.join(valid)}")
    if augment.get("policy") not in (None, *POLICY_NAMES):
        raise NolbError(f"augment.policy: unknown policy {augment['policy']!r}; "
                        f"expected one of {', '.join(POLICY_NAMES)}")
    return replace(spec, **augment)


def build_transform(preset: str, train: bool, *, mean, std, image_size: int | None = None,
                    augment: Any = None) -> v2.Compose:
    """The per-image torchvision.transforms.v2 pipeline: augmentation, float, normalise.

    Accepts PIL images or uint8 CHW tensors; returns a float32 normalised tensor.
    """
    spec = resolve_augment(preset, train, augment)
    steps: list = [v2.ToImage()]
    if preset == "imagenet":
        size = image_size or 224
        if spec.resized_crop:
            steps += [v2.RandomResizedCrop(size, antialias=True)]
        else:
            steps += [v2.Resize(int(round(size * 256 / 224)), antialias=True), v2.CenterCrop(size)]
    elif spec.crop_padding > 0:
        steps.append(_RandomCropSameSize(spec.crop_padding))
    if spec.flip:
        steps.append(v2.RandomHorizontalFlip())
    if spec.resized_crop:
        steps.append(v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4))
    if spec.policy == "autoaugment":
        steps.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
    elif spec.policy == "randaugment":
        steps.append(v2.RandAugment())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class _RandomCropSameSize(torch.nn.Module):
    """``v2.RandomCrop(size=input size, padding=p)`` for inputs of any size."""

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.padding = padding

    def forward(self, image):
        height, width = image.shape[-2:]
        return v2.RandomCrop((height, width), padding=self.padding)(image)
