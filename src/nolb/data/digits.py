"""Digits-LT: scikit-learn's embedded 8x8 digits (1,797 images, 10 classes) made long-tailed.

It ships inside scikit-learn, so it needs no download: the embedded default for
``nolb demo``.  Construction (deterministic):

1. Per class (174..183 images each), a ``RandomState(0)`` permutation; the first 50
   images form the balanced test set (500 images), the next 20 the balanced validation
   split (200 images).  This split never depends on ``seed``.
2. The remaining 104..113 images per class are the pool; the training set keeps
   ``n_i = int(n_max * (1/IR)^(i/9))`` of them (Cao et al.'s subsample with ``seed``).

Defaults ``n_max = 100``, ``IR = 20`` give counts 100, 71, 51, 36, 26, 18, 13, 9, 6, 5
(335 images): a plain cross-entropy linear model leaves the two rarest digits behind
(recall about 0.3) although class-balanced training still reaches 0.6-0.8 on them, so the
worst classes are visibly left behind yet learnable.  Pixels (0..16) are scaled to uint8
(``round(v * 255 / 16)``).  Image identities are ``"digits:<row>"`` of
``load_digits()``; the three splits are disjoint by construction (test and validation are
taken out before the subsample, at every IR).  Preset "digits": a one-pixel random shift, no flip (a
mirrored digit is another symbol or none).
"""

from __future__ import annotations

import numpy as np

from nolb.data.profiles import long_tailed_counts, subsample_long_tailed
from nolb.data.splits import identities
from nolb.data.tensor_dataset import TensorImageDataset
from nolb.errors import NolbError

TEST_PER_CLASS = 50
VAL_PER_CLASS = 20
SPLIT_SEED = 0
# Mean and std of all 1,797 images scaled to [0, 1] (computed once from sklearn's data).
MEAN, STD = (0.3053,), (0.3759,)


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as uint8 ``(N, 1, 8, 8)`` images and int64 labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return images, bunch.target.astype(np.int64)


def build_digits_lt(imbalance_ratio: float = 20.0, profile: str = "exp", n_max: int = 100, seed: int = 0) -> dict:
    """Build Digits-LT; returns the fields of :class:`nolb.data.registry.LTData`.

    Args:
        imbalance_ratio: ``n_max / n_min`` of the training profile (default 20).
        profile: ``"exp"`` or ``"step"``.
        n_max: images of the most frequent class (at most 104, the smallest pool).
        seed: seed of the subsample from the pool (the test/val split is fixed).
    """
    images, labels = read_digits()
    rng = np.random.RandomState(SPLIT_SEED)
    test_idx, val_idx, pool_idx = [], [], []
    for c in range(10):
        idx = rng.permutation(np.where(labels == c)[0])
        test_idx.append(idx[:TEST_PER_CLASS])
        val_idx.append(idx[TEST_PER_CLASS: TEST_PER_CLASS + VAL_PER_CLASS])
        pool_idx.append(idx[TEST_PER_CLASS + VAL_PER_CLASS:])
    smallest_pool = min(len(p) for p in pool_idx)
    if not 1 <= n_max <= smallest_pool:
        raise NolbError(f"n_max: must be in 1..{smallest_pool} for digits_lt, got {n_max}")
    counts = long_tailed_counts(n_max, 10, imbalance_ratio, profile)
    pool = np.concatenate(pool_idx)
    kept, _ = subsample_long_tailed(labels[pool], counts, seed)
    train_idx = pool[np.concatenate(kept)]
    names = [str(d) for d in range(10)]

    def subset(idx) -> TensorImageDataset:
        idx = np.concatenate(idx) if isinstance(idx, list) else idx
        return TensorImageDataset(images[idx], labels[idx], names)

    splits = {"train": identities("digits", train_idx), "val": identities("digits", np.concatenate(val_idx)),
              "test": identities("digits", np.concatenate(test_idx)),
              "sources": {"train": f"{len(train_idx)} of the {len(labels) - 10 * (TEST_PER_CLASS + VAL_PER_CLASS)} "
                                   f"pool images (long-tailed subsample, seed {seed})",
                          "val": f"{10 * VAL_PER_CLASS} images, {VAL_PER_CLASS} per class, held out before the "
                                 f"subsample (fixed seed {SPLIT_SEED})",
                          "test": f"{10 * TEST_PER_CLASS} images, {TEST_PER_CLASS} per class, held out before the "
                                  f"subsample (fixed seed {SPLIT_SEED})"}}
    return {
        "train": subset(train_idx), "val": subset(val_idx), "test": subset(test_idx), "splits": splits,
        "num_classes": 10, "class_counts": counts, "class_names": names, "preset": "digits",
        "image_size": 8, "in_channels": 1, "mean": MEAN, "std": STD,
        "info": {
            "source": "sklearn.datasets.load_digits", "imbalance_ratio_requested": float(imbalance_ratio),
            "profile": profile, "n_max": n_max, "seed": seed, "split_seed": SPLIT_SEED,
            "val_per_class": VAL_PER_CLASS, "test_per_class": TEST_PER_CLASS,
            "val_source": splits["sources"]["val"], "test_source": splits["sources"]["test"],
        },
    }
