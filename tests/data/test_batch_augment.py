"""The fast whole-batch augmentation against naive loops and the per-image v2 path."""

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import v2

from nolb.data import TensorImageDataset, build_loader, build_transform
from nolb.data.batch_augment import normalize, random_crop, random_flip

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def test_random_crop_matches_a_naive_loop():
    images = torch.randint(0, 256, (6, 3, 5, 7), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    out = random_crop(images, 2, generator)
    offsets = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(0))
    for n in range(6):
        padded = torch.zeros(3, 9, 11, dtype=torch.uint8)
        padded[:, 2:7, 2:9] = images[n]
        dy, dx = int(offsets[0, n]), int(offsets[1, n])
        assert torch.equal(out[n], padded[:, dy:dy + 5, dx:dx + 7])


def test_random_flip_matches_a_naive_loop():
    images = torch.randint(0, 256, (8, 1, 3, 4), dtype=torch.uint8)
    out = random_flip(images, torch.Generator().manual_seed(1))
    flips = torch.rand(8, generator=torch.Generator().manual_seed(1)) < 0.5
    for n in range(8):
        assert torch.equal(out[n], images[n].flip(-1) if flips[n] else images[n])


def test_normalize_matches_v2_normalize():
    images = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    expected = v2.Normalize(list(MEAN), list(STD))(v2.ToDtype(torch.float32, scale=True)(images))
    torch.testing.assert_close(normalize(images, MEAN, STD), expected, rtol=1e-5, atol=1e-5)


def _coordinate_image(size=32):
    # channel 0 = row + 1, channel 1 = column + 1: every pixel says where it came from
    rows = torch.arange(1, size + 1, dtype=torch.uint8)[:, None].expand(size, size)
    return torch.stack([rows, rows.t().contiguous(), torch.zeros(size, size, dtype=torch.uint8)])


def _decode(batch, padding=4):
    """(dy, dx, flipped) of each crop of the coordinate image (float normalised input)."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    raw = torch.round((batch * std + mean) * 255).to(torch.int64)
    codes = []
    for image in raw:
        inside = torch.nonzero(image[0] > 0)[0, 0]
        row_values = image[1, inside][image[1, inside] > 0]
        flipped = bool(row_values[0] > row_values[-1])
        if flipped:
            image = image.flip(-1)
        r, c = torch.nonzero(image[0] > 0)[0].tolist()
        dy = int(image[0, r, c]) - 1 - r + padding
        dx = int(image[1, r, c]) - 1 - c + padding
        codes.append((dy * 9 + dx) * 2 + int(flipped))
    return np.bincount(codes, minlength=162)


def test_fast_path_has_the_crop_and_flip_distribution_of_the_v2_path():
    n = 3000
    image = _coordinate_image()
    dataset = TensorImageDataset(image.expand(n, 3, 32, 32).clone(), torch.zeros(n, dtype=torch.int64))
    loader = build_loader(dataset, batch_size=500, train=True, preset="cifar", mean=MEAN, std=STD, seed=0)
    fast = _decode(torch.cat([x for x, _ in loader]))
    torch.manual_seed(0)
    transform = build_transform("cifar", True, mean=MEAN, std=STD)
    slow = _decode(torch.stack([transform(image) for _ in range(n)]))
    assert fast.sum() == slow.sum() == n
    # each path uniform over the 9 x 9 offsets x 2 flips, and the two paths alike
    assert stats.chisquare(fast).pvalue > 1e-3 and stats.chisquare(slow).pvalue > 1e-3
    assert stats.chi2_contingency(np.stack([fast, slow]) + 0).pvalue > 1e-3
    fast_flip = fast.reshape(81, 2).sum(0)
    assert stats.binomtest(int(fast_flip[1]), n).pvalue > 1e-3


@pytest.mark.parametrize("preset,expect_flip", [("mnist", False), ("digits", False), ("cifar", True)])
def test_presets_flip_only_where_documented(preset, expect_flip):
    images = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4).expand(64, 1, 4, 4).clone()
    loader = build_loader(TensorImageDataset(images, torch.zeros(64, dtype=torch.int64)), batch_size=64, train=True,
                          preset=preset, mean=(0.0,), std=(1.0,), augment={"crop_padding": 0})
    x, _ = next(iter(loader))
    flipped = (x * 255).round().to(torch.uint8).eq(images.flip(-1)).flatten(1).all(1)
    assert bool(flipped.any()) == expect_flip


@pytest.mark.parametrize("padding", [0, 3])
def test_fused_crop_and_flip_equals_crop_then_flip(padding):
    from nolb.data.batch_augment import crop_and_flip

    images = torch.randint(0, 256, (16, 2, 5, 6), dtype=torch.uint8)
    fused = crop_and_flip(images, padding, True, torch.Generator().manual_seed(9))
    generator = torch.Generator().manual_seed(9)
    assert torch.equal(fused, random_flip(random_crop(images, padding, generator), generator))
