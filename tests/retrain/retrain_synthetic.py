"""Tiny synthetic long-tailed feature sets for the stage-2/3 tests (no backbone needed)."""

from __future__ import annotations

import torch
from torch import nn

from nolb.retrain.features import FeatureSplit

COUNTS = (300, 120, 45, 16, 6)


def gaussian_split(per_class, means: torch.Tensor, noise: float, seed: int) -> FeatureSplit:
    """Features ``mean_c + noise * N(0, I)`` with ``per_class[c]`` rows of class c."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.full((int(n),), c, dtype=torch.long) for c, n in enumerate(per_class)])
    features = means[labels] + noise * torch.randn(len(labels), means.shape[1], generator=generator)
    return FeatureSplit(features.to(torch.float16), labels, len(labels))


def long_tailed_problem(dim: int = 8, noise: float = 0.7, val_per_class: int = 60, seed: int = 0):
    """(train, val, test, class_counts, means) for len(COUNTS) classes with separable-ish means."""
    generator = torch.Generator().manual_seed(1000 + seed)
    means = torch.randn(len(COUNTS), dim, generator=generator)
    train = gaussian_split(COUNTS, means, noise, seed)
    val = gaussian_split([val_per_class] * len(COUNTS), means, noise, seed + 1)
    test = gaussian_split([val_per_class] * len(COUNTS), means, noise, seed + 2)
    return train, val, test, torch.tensor(COUNTS, dtype=torch.long), means


def head_biased_classifier(means: torch.Tensor, class_counts: torch.Tensor, bias_strength: float = 3.0) -> nn.Linear:
    """A linear classifier that favours frequent classes: ``z_c = <m_c, x> - |m_c|^2/2 + s log n_c``."""
    head = nn.Linear(means.shape[1], means.shape[0])
    with torch.no_grad():
        head.weight.copy_(means)
        head.bias.copy_(-0.5 * means.pow(2).sum(1) + bias_strength * class_counts.double().log().float())
    return head
