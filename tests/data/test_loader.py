"""build_loader: fast-path batches, DDP sharding of train and eval loaders, the per-image path."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from nolb.data import TensorImageDataset, build_loader
from nolb.errors import NolbError

MEAN, STD = (0.5,), (0.25,)


def _dataset(n=50, classes=5):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(n, 1, 6, 6)).astype(np.uint8)
    return TensorImageDataset(images, np.arange(n) % classes)


def _reference_normalise(images):
    return v2.Normalize(list(MEAN), list(STD))(images.to(torch.float32) / 255)


def test_eval_loader_gives_every_image_in_order_normalised():
    ds = _dataset()
    loader = build_loader(ds, batch_size=16, train=False, preset="digits", mean=MEAN, std=STD)
    xs, ys = zip(*loader)
    assert len(loader) == 4 == len(xs) and xs[-1].shape[0] == 2
    torch.testing.assert_close(torch.cat(xs), _reference_normalise(ds.images))
    assert torch.equal(torch.cat(ys), ds.labels) and ys[0].dtype == torch.int64


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ddp_eval_loaders_count_every_image_once(world_size):
    ds = _dataset(n=23)
    labels = []
    for rank in range(world_size):
        loader = build_loader(ds, batch_size=4, train=False, preset="digits", mean=MEAN, std=STD,
                              rank=rank, world_size=world_size)
        labels += [y for _, y in loader]
    seen = torch.cat(labels)
    assert torch.equal(seen, ds.labels)  # contiguous shards in rank order: no padding, no repeats


def test_train_loader_shards_and_drop_last():
    ds = _dataset(n=50)
    per_rank = []
    for rank in range(2):
        loader = build_loader(ds, batch_size=8, train=True, preset="digits", mean=MEAN, std=STD, seed=4,
                              rank=rank, world_size=2, augment="none")
        batches = list(loader)
        assert len(loader) == len(batches) == 25 // 8 and all(x.shape[0] == 8 for x, _ in batches)
        per_rank.append(torch.cat([x for x, _ in batches]))
    seen = {tuple(row.tolist()) for x in per_rank for row in x.flatten(1)}
    assert len(seen) == 48  # the two ranks' images are distinct (instance sampler, one epoch)


def test_drop_last_never_leaves_zero_batches():
    ds = _dataset(n=5)
    loader = build_loader(ds, batch_size=8, train=True, preset="digits", mean=MEAN, std=STD)
    assert len(loader) == 1 and next(iter(loader))[0].shape[0] == 5


def test_augmentation_is_seeded_by_seed_and_epoch():
    ds = _dataset()

    def first_batch(seed, epoch):
        loader = build_loader(ds, batch_size=50, train=True, preset="digits", mean=MEAN, std=STD, seed=seed)
        loader.set_epoch(epoch)
        return next(iter(loader))[0]

    assert torch.equal(first_batch(0, 1), first_batch(0, 1))
    assert not torch.equal(first_batch(0, 1), first_batch(0, 2))
    assert not torch.equal(first_batch(0, 1), first_batch(1, 1))


def test_class_balanced_loader_balances_classes():
    labels = np.repeat(np.arange(3), [90, 9, 1])
    ds = TensorImageDataset(np.zeros((100, 1, 2, 2), np.uint8), labels)
    loader = build_loader(ds, batch_size=100, train=True, preset="digits", mean=MEAN, std=STD,
                          sampler="class_balanced", class_counts=[90, 9, 1])
    drawn = []
    for epoch in range(30):
        loader.set_epoch(epoch)
        drawn += [y for _, y in loader]
    y = torch.cat(drawn)
    freq = torch.bincount(y, minlength=3).float() / len(y)
    assert torch.all((freq - 1 / 3).abs() < 0.03)


def test_channels_last_and_policy_path():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    ds = TensorImageDataset(images, torch.arange(8) % 2)
    loader = build_loader(ds, batch_size=4, train=True, preset="cifar", mean=(0.5,) * 3, std=(0.2,) * 3,
                          channels_last=True)
    x, _ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last)
    policy = build_loader(ds, batch_size=4, train=True, preset="cifar", mean=(0.5,) * 3, std=(0.2,) * 3,
                          augment="autoaugment")
    x, y = next(iter(policy))  # AutoAugment runs on the per-image path
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_bad_loader_arguments():
    with pytest.raises(NolbError, match="preset"):
        build_loader(_dataset(), batch_size=4, train=True, preset="svhn", mean=MEAN, std=STD)
    with pytest.raises(NolbError, match="augment.shear"):
        build_loader(_dataset(), batch_size=4, train=True, preset="digits", mean=MEAN, std=STD, augment={"shear": 1})
