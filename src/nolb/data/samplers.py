"""Training samplers for long-tailed data, identical on every DDP rank.

Each epoch every rank draws the same list of ``num_samples`` dataset indices from a
generator seeded with ``(seed, epoch)``; the list is cut to a multiple of ``world_size``
(the remainder is dropped so that every rank runs the same number of steps) and rank
``r`` takes the strided shard ``list[r::world_size]``.  The shards partition the list.

Schemes (Kang et al. 2020, "Decoupling representation and classifier"), with ``n_j``
the training count of class ``j``, ``N = sum_j n_j`` and ``C`` classes:

- ``instance``: a random permutation of the dataset (every image once per epoch),
  so class ``j`` is drawn with probability ``n_j / N``.
- ``class_balanced``: a class with probability ``1 / C``, then an image of it uniformly.
- ``sqrt``: a class with probability ``sqrt(n_j) / sum_k sqrt(n_k)``, then an image.
- ``progressive``: ``p_j(t) = (1 - t/T) n_j / N + (t/T) / C`` at epoch ``t`` of ``T``
  (``total_epochs``), moving from instance- to class-balanced.

The class-based schemes draw images within a class uniformly with replacement.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler

from nolb.errors import NolbError

SAMPLER_NAMES = ("instance", "class_balanced", "sqrt", "progressive")


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise NolbError(f"rank {rank} is not in 0..{world_size - 1}")


class LongTailedSampler(Sampler[int]):
    """Index sampler for one rank; see the module docstring for the schemes.

    Args:
        name: one of :data:`SAMPLER_NAMES`.
        labels: (N,) training labels.
        num_classes: ``C``.
        seed: base seed; the epoch's list depends only on ``(seed, epoch)``.
        rank, world_size: this process's place in DDP (0 and 1 without DDP).
        total_epochs: ``T`` for ``progressive``.
        num_samples: draws per epoch over all ranks (default ``N``).
    """

    def __init__(self, name: str, labels, num_classes: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, total_epochs: int | None = None, num_samples: int | None = None) -> None:
        if name not in SAMPLER_NAMES:
            raise NolbError(f"sampler: unknown sampler {name!r}; expected one of {', '.join(SAMPLER_NAMES)}")
        if name == "progressive" and not (total_epochs and total_epochs > 0):
            raise NolbError("sampler: 'progressive' needs total_epochs > 0")
        _check_rank(rank, world_size)
        self.name = name
        self.labels = np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)
        self.num_classes = int(num_classes)
        self.counts = np.bincount(self.labels, minlength=self.num_classes)
        if len(self.counts) > self.num_classes:
            raise NolbError(f"label {len(self.counts) - 1} out of range 0..{self.num_classes - 1}")
        self.by_class = [np.where(self.labels == c)[0] for c in range(self.num_classes)]
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.total_epochs = total_epochs
        self.num_samples = int(num_samples) if num_samples is not None else len(self.labels)
        self.epoch = 0
        if self.num_samples < world_size:
            raise NolbError(f"{self.num_samples} samples cannot be shared by {world_size} ranks")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose list the next iteration draws."""
        self.epoch = int(epoch)

    def class_probabilities(self) -> np.ndarray:
        """Probability of drawing each class at the current epoch."""
        n = self.counts.astype(np.float64)
        if self.name == "instance":
            return n / n.sum()
        present = n > 0
        if self.name == "class_balanced":
            weights = present.astype(np.float64)
        elif self.name == "sqrt":
            weights = np.sqrt(n)
        else:
            t = min(self.epoch / self.total_epochs, 1.0)
            weights = (1.0 - t) * n / n.sum() + t * present / present.sum()
        return weights / weights.sum()

    def global_indices(self) -> np.ndarray:
        """The epoch's full index list, the same on every rank (before sharding)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.name == "instance":
            reps = -(-self.num_samples // len(self.labels))
            order = np.concatenate([rng.permutation(len(self.labels)) for _ in range(reps)])
            return order[: self.num_samples]
        classes = rng.choice(self.num_classes, size=self.num_samples, p=self.class_probabilities())
        picks = rng.random(self.num_samples)
        out = np.empty(self.num_samples, dtype=np.int64)
        for c in np.unique(classes):
            where = classes == c
            members = self.by_class[c]
            out[where] = members[np.minimum((picks[where] * len(members)).astype(np.int64), len(members) - 1)]
        return out

    def __iter__(self):
        indices = self.global_indices()
        usable = len(indices) - len(indices) % self.world_size
        return iter(indices[self.rank:usable:self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples // self.world_size


class ContiguousShardSampler(Sampler[int]):
    """Evaluation order: rank ``r`` gets a contiguous block; no padding, no repeats.

    The blocks ``[r * N // W, (r + 1) * N // W)`` partition ``range(N)``, so every image is
    counted exactly once over all ranks (their sizes may differ by one).
    """

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        _check_rank(rank, world_size)
        self.start = rank * num_items // world_size
        self.stop = (rank + 1) * num_items // world_size

    def set_epoch(self, epoch: int) -> None:
        """Evaluation order does not depend on the epoch."""

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def build_sampler(name: str, labels, num_classes: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                  total_epochs: int | None = None, num_samples: int | None = None) -> LongTailedSampler:
    """Build a training sampler by name (see :class:`LongTailedSampler`)."""
    return LongTailedSampler(name, labels, num_classes, seed=seed, rank=rank, world_size=world_size,
                             total_epochs=total_epochs, num_samples=num_samples)
