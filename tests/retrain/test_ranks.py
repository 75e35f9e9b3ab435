"""Sharded extraction without processes: each batch goes to one rank and is the same at any world size."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from nolb.data import build_loader
from nolb.data.tensor_dataset import TensorImageDataset
from nolb.engine.distributed import DistInfo
from nolb.retrain.ranks import on_rank0, own_batches, sharded_batches


class PlainImages(Dataset):
    """uint8 CHW images through the per-image (torch DataLoader + transforms) path."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


def _data(n=50):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=g), torch.arange(n) % 5


def _loader(dataset):
    return build_loader(dataset, batch_size=8, train=True, preset="cifar", mean=(0.5,) * 3, std=(0.25,) * 3,
                        drop_last=False, seed=3)


def _batches(dataset, info, view):
    loader = _loader(dataset)
    loader.set_epoch(view)
    return {b: (x.clone(), y.clone()) for b, x, y in own_batches(loader, view=view, seed=3, info=info)}


def test_each_batch_on_one_rank_with_the_one_process_draws():
    images, labels = _data()
    for dataset in (TensorImageDataset(images, labels), PlainImages(images, labels)):
        for view in (0, 1):
            alone = _batches(dataset, DistInfo(), view)
            assert sorted(alone) == list(range(7))  # 50 images in batches of 8
            parts = [_batches(dataset, DistInfo(rank=r, world_size=3), view) for r in range(3)]
            assert [sorted(p) for p in parts] == [[0, 3, 6], [1, 4], [2, 5]]
            for part in parts:
                for b, (x, y) in part.items():
                    torch.testing.assert_close(x, alone[b][0], rtol=0, atol=0)
                    assert torch.equal(y, alone[b][1])
        # augmented: two views differ
        assert not torch.equal(_batches(dataset, DistInfo(), 0)[0][0], _batches(dataset, DistInfo(), 1)[0][0])


def test_per_image_draws_leave_the_global_rng_alone():
    images, labels = _data()
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    _batches(PlainImages(images, labels), DistInfo(), 0)
    assert torch.equal(torch.rand(3), expected)


def test_one_process_extraction_keeps_loader_order():
    images, labels = _data()
    loader = _loader(TensorImageDataset(images, labels))
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 4))
    out = list(sharded_batches(backbone, loader, views=2, device=torch.device("cpu"), info=DistInfo(), desc="t"))
    assert len(out) == 14 and sum(f.shape[0] for f, _ in out) == 100
    naive = []
    for view in range(2):
        loader.set_epoch(view)
        naive += [(backbone(x).detach().float().to(torch.float16).numpy(), y.numpy()) for x, y in loader]
    for (f, y), (nf, ny) in zip(out, naive):
        assert (f == nf).all() and (y == ny).all()


def test_on_rank0_alone_just_runs():
    assert on_rank0(lambda: 42, DistInfo()) == 42
