"""Samplers: class frequencies against their formulas, DDP partition, determinism across ranks."""

import numpy as np
import pytest
from scipy import stats

from nolb.data.samplers import ContiguousShardSampler, build_sampler
from nolb.errors import NolbError

COUNTS = np.array([400, 150, 60, 20, 8, 2])
LABELS = np.random.RandomState(0).permutation(np.repeat(np.arange(6), COUNTS))


def _expected(name, epoch=0, total=10):
    n = COUNTS.astype(float)
    if name == "instance":
        w = n
    elif name == "class_balanced":
        w = np.ones_like(n)
    elif name == "sqrt":
        w = np.sqrt(n)
    else:  # Kang et al.: p_j = (1 - t/T) n_j / N + (t/T) / C
        t = epoch / total
        w = (1 - t) * n / n.sum() + t / len(n)
    return w / w.sum()


@pytest.mark.parametrize("name,epoch", [("class_balanced", 0), ("sqrt", 0), ("progressive", 0),
                                        ("progressive", 4), ("progressive", 10)])
def test_class_frequencies_follow_the_scheme(name, epoch):
    sampler = build_sampler(name, LABELS, 6, seed=3, total_epochs=10, num_samples=20000)
    sampler.set_epoch(epoch)
    drawn = np.bincount(LABELS[list(sampler)], minlength=6)
    expected = _expected(name, epoch) * drawn.sum()
    assert stats.chisquare(drawn, expected).pvalue > 1e-3


def test_instance_sampler_is_a_permutation_each_epoch():
    sampler = build_sampler("instance", LABELS, 6, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == sorted(second) == list(range(len(LABELS)))
    assert first != second


def test_images_within_a_class_are_uniform():
    sampler = build_sampler("class_balanced", LABELS, 6, seed=0, num_samples=30000)
    picks = np.asarray(list(sampler))
    members = np.where(LABELS == 3)[0]
    hits = np.array([(picks == m).sum() for m in members])
    assert stats.chisquare(hits).pvalue > 1e-3


@pytest.mark.parametrize("name", ["instance", "class_balanced", "sqrt", "progressive"])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_partition_the_global_list(name, world_size):
    shards = []
    for rank in range(world_size):
        sampler = build_sampler(name, LABELS, 6, seed=7, rank=rank, world_size=world_size, total_epochs=5)
        sampler.set_epoch(2)
        shards.append(list(sampler))
    reference = build_sampler(name, LABELS, 6, seed=7, total_epochs=5)
    reference.set_epoch(2)
    full = list(reference)
    usable = len(full) - len(full) % world_size
    assert all(len(s) == usable // world_size for s in shards)
    merged = [shards[i % world_size][i // world_size] for i in range(usable)]
    assert merged == full[:usable]  # same list on every rank, disjoint strided shards covering it


def test_same_seed_same_list_different_seed_different_list():
    a = list(build_sampler("sqrt", LABELS, 6, seed=11))
    assert a == list(build_sampler("sqrt", LABELS, 6, seed=11))
    assert a != list(build_sampler("sqrt", LABELS, 6, seed=12))


@pytest.mark.parametrize("n,world_size", [(10, 3), (7, 4), (5, 1)])
def test_eval_shards_count_every_item_once(n, world_size):
    seen = [i for r in range(world_size) for i in ContiguousShardSampler(n, r, world_size)]
    assert seen == list(range(n))


def test_bad_sampler_arguments():
    with pytest.raises(NolbError, match="unknown sampler"):
        build_sampler("balanced", LABELS, 6)
    with pytest.raises(NolbError, match="total_epochs"):
        build_sampler("progressive", LABELS, 6)
    with pytest.raises(NolbError, match="rank"):
        build_sampler("instance", LABELS, 6, rank=2, world_size=2)
