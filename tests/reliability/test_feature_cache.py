"""Stage-2 feature cache: a partial, truncated or corrupted cache is detected and rebuilt,
never used.  Features are those of a small seeded backbone on scikit-learn's real 8x8 digits.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nolb.retrain.features import FeatureCache, extract_features, model_fingerprint


@pytest.fixture(scope="module")
def setup():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images[:600], dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target[:600], dtype=torch.int64)
    loader = [(x[i:i + 100], y[i:i + 100]) for i in range(0, len(y), 100)]
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
    fingerprint = {"model": model_fingerprint(backbone), "data": "sklearn digits[:600]"}
    return backbone, loader, fingerprint, extract_features(backbone, loader)


def _truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 + 7] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "features-truncated": lambda c: _truncate(c.paths("train")[0]),
    "features-byte-flipped": lambda c: _flip_byte(c.paths("train")[0]),
    "labels-truncated": lambda c: _truncate(c.paths("train")[1], 0.9),
    "labels-byte-flipped": lambda c: _flip_byte(c.paths("train")[1]),
    "manifest-missing": lambda c: c.paths("train")[2].unlink(),
    "manifest-truncated": lambda c: _truncate(c.paths("train")[2]),
    "manifest-other-fingerprint": lambda c: c.paths("train")[2].write_text(
        json.dumps({**json.loads(c.paths("train")[2].read_text()), "fingerprint": {"model": "x"}})),
    "features-missing": lambda c: c.paths("train")[0].unlink(),
}


def test_cache_is_reused_when_intact(tmp_path, setup):
    backbone, loader, fingerprint, fresh = setup
    cache = FeatureCache(tmp_path)
    first, reused = cache.get("train", fingerprint, backbone, loader)
    assert not reused and torch.equal(first.labels, fresh.labels)
    second, reused = cache.get("train", fingerprint, backbone, loader)
    assert reused and torch.equal(second.features, fresh.features)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_cache_is_rebuilt_not_used(tmp_path, setup, damage):
    backbone, loader, fingerprint, fresh = setup
    cache = FeatureCache(tmp_path)
    cache.get("train", fingerprint, backbone, loader)
    DAMAGE[damage](cache)
    split, reused = cache.get("train", fingerprint, backbone, loader)
    assert not reused, "a damaged cache was used"
    assert torch.equal(split.features, fresh.features) and torch.equal(split.labels, fresh.labels)
    assert split.num_images == 600
    assert cache.get("train", fingerprint, backbone, loader)[1], "the rebuilt cache is not reused"


def test_interrupted_build_leaves_no_usable_cache(tmp_path, setup):
    """An exception half-way through extraction (a kill, a bad batch) leaves nothing that loads,
    and no temporary files."""
    backbone, loader, fingerprint, fresh = setup
    cache = FeatureCache(tmp_path)
    cache.get("train", fingerprint, backbone, loader)  # an old, complete cache

    class Boom(Exception):
        pass

    def broken():
        yield loader[0]
        yield loader[1]
        raise Boom()

    new_fingerprint = {**fingerprint, "data": "changed"}
    with pytest.raises(Boom):
        cache.build("train", new_fingerprint, backbone, broken())
    assert cache.load("train", new_fingerprint) is None
    assert cache.load("train", fingerprint) is None  # the old manifest was withdrawn first
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    split, reused = cache.get("train", new_fingerprint, backbone, loader)
    assert not reused and torch.equal(split.features, fresh.features)
