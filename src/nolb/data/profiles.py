"""Long-tailed class-count profiles and the Cao et al. (2019) subsampling.

The exponential profile of LDAM-DRW (Cao et al. 2019), used for CIFAR-10/100-LT::

    n_i = int(n_max * (1 / IR) ** (i / (C - 1)))      i = 0 .. C-1, in label order

so class 0 keeps ``n_max`` images and class ``C-1`` keeps ``int(n_max / IR)``.  The
"step" profile keeps ``n_max`` for the first ``C // 2`` classes and ``int(n_max / IR)`` for
the rest.  The subsample seeds one ``RandomState(0)`` (identical to the reference
``np.random.seed(0)``), then, class by class in label order, shuffles that class's indices
(in dataset order) and keeps the first ``n_i``: the published training sets, image for
image.  The images it leaves unused are where :func:`nolb.data.split_plans.plan_validation`
draws a balanced validation split from, so the training set stays exactly as published.
"""

from __future__ import annotations

import numpy as np

from nolb.errors import NolbError

PROFILE_NAMES = ("exp", "step")


def long_tailed_counts(n_max: int, num_classes: int, imbalance_ratio: float, profile: str = "exp") -> list[int]:
    """Per-class image counts of a long-tailed profile, class 0 the largest.

    Args:
        n_max: images kept for class 0.
        num_classes: number of classes ``C``.
        imbalance_ratio: ``IR = n_max / n_min`` (>= 1; 1 gives a balanced set).
        profile: ``"exp"`` (``n_i = int(n_max * (1/IR)^(i/(C-1)))``) or ``"step"``
            (``n_max`` for the first ``C // 2`` classes, ``int(n_max / IR)`` after).

    Returns:
        A list of ``C`` integers.
    """
    if profile not in PROFILE_NAMES:
        raise NolbError(f"profile: unknown profile {profile!r}; expected one of {', '.join(PROFILE_NAMES)}")
    if not imbalance_ratio >= 1.0:
        raise NolbError(f"imbalance_ratio: must be >= 1, got {imbalance_ratio}")
    if num_classes < 1 or n_max < 1:
        raise NolbError(f"num_classes and n_max must be positive, got {num_classes} and {n_max}")
    factor = 1.0 / imbalance_ratio  # the reference code multiplies by imb_factor = 1/IR
    if profile == "step":
        half = num_classes // 2
        return [n_max if i < half else int(n_max * factor) for i in range(num_classes)]
    if num_classes == 1:
        return [n_max]
    counts = [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    if min(counts) < 1:
        raise NolbError(f"imbalance_ratio {imbalance_ratio} leaves a class with no image (n_max {n_max})")
    return counts


def subsample_long_tailed(labels: np.ndarray, counts: list[int],
                          seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Cao et al.'s subsample: per class in label order, shuffle its indices, keep the first n_c.

    Args:
        labels: (N,) integer labels of the full (balanced) training set, dataset order.
        counts: images to keep per class (from :func:`long_tailed_counts`).
        seed: seed of the single ``RandomState`` shared by all classes (0 = published sets).

    Returns:
        ``(kept, unused)``: per class, the kept indices (in shuffled order; concatenated
        class by class they give the reference code's training order) and the shuffled
        indices left unused.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.RandomState(seed)
    kept, unused = [], []
    for c, n_c in enumerate(counts):
        idx = np.where(labels == c)[0]
        if len(idx) < n_c:
            raise NolbError(f"class {c} has {len(idx)} training images, the profile asks for {n_c}")
        rng.shuffle(idx)
        kept.append(idx[:n_c])
        unused.append(idx[n_c:])
    return kept, unused


def group_sizes(counts, many_threshold: int = 100, few_threshold: int = 20) -> dict[str, int]:
    """Number of Many (> many_threshold), Medium and Few (< few_threshold) classes."""
    counts = np.asarray(counts)
    many = int((counts > many_threshold).sum())
    few = int((counts < few_threshold).sum())
    return {"many": many, "medium": int(len(counts) - many - few), "few": few}
