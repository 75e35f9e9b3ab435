"""The stored preprocessing is exactly nolb's evaluation transform, preset by preset."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from nolb.data.batch_augment import normalize
from nolb.data.transforms import build_transform
from nolb.deploy.description import Preprocessing
from nolb.deploy.images import build_preprocess


@pytest.mark.parametrize("preset,size,channels,image_shape", [
    ("imagenet", 224, 3, (300, 257)),  # Resize(256) + CenterCrop(224) on a non-square image
    ("imagenet", 112, 3, (97, 140)),   # another input size: resize to round(112 * 256 / 224) = 128
    ("cifar", 32, 3, (32, 32)),
])
def test_rgb_presets_match_the_eval_transform(preset, size, channels, image_shape):
    data = SimpleNamespace(image_size=size, in_channels=channels, preset=preset, mean=(0.5, 0.4, 0.3),
                           std=(0.2, 0.25, 0.3))
    p = Preprocessing.from_data(data)
    pixels = np.random.RandomState(0).randint(0, 256, size=(*image_shape, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    ours = build_preprocess(p)(image)
    theirs = build_transform(preset, False, mean=data.mean, std=data.std, image_size=size)(image)
    assert ours.shape == theirs.shape == (3, size, size)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    assert Preprocessing.from_dict(p.to_dict()) == p


def test_grey_in_memory_preset_matches_the_fast_loader_normalisation():
    data = SimpleNamespace(image_size=8, in_channels=1, preset="digits", mean=(0.3053,), std=(0.3759,))
    p = Preprocessing.from_data(data)
    pixels = np.random.RandomState(1).randint(0, 256, size=(8, 8), dtype=np.uint8)
    ours = build_preprocess(p)(Image.fromarray(pixels, mode="L"))
    fast = normalize(torch.from_numpy(pixels)[None, None], data.mean, data.std)[0]  # nolb's fast eval path
    torch.testing.assert_close(ours, fast, rtol=0, atol=1e-6)
