"""Epoch-wise learning-rate schedules: linear warm-up, then multistep, cosine or constant.

The CIFAR-LT recipe of LDAM-DRW: ``lr_e = lr * (e + 1) / W`` for the first ``W = 5``
epochs, then ``lr * gamma^k`` where ``k`` counts the milestones ``<= e`` (x0.1 from epoch
160, x0.01 from 180 of 200; epochs are 0-based).  Cosine (ImageNet-LT):
``lr_e = min_lr + (lr - min_lr) (1 + cos(pi (e - W) / (E - W))) / 2`` after the warm-up.
The schedule is a pure function of the epoch, so resuming needs only the epoch number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EpochSchedule:
    """The learning rate of each (0-based) epoch.

    Args:
        lr: Base (peak) learning rate.
        epochs: Total epochs E.
        kind: ``"multistep"``, ``"cosine"`` or ``"constant"``.
        warmup_epochs: Linear warm-up length W (0: none).
        milestones: Epochs where multistep multiplies by ``gamma``.
        gamma: Multistep factor.
        min_lr: Cosine floor.
    """

    lr: float
    epochs: int
    kind: str = "multistep"
    warmup_epochs: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    min_lr: float = 0.0

    def lr_at(self, epoch: int) -> float:
        """The learning rate of epoch ``epoch`` (0-based)."""
        if epoch < self.warmup_epochs:
            return self.lr * (epoch + 1) / self.warmup_epochs
        if self.kind == "multistep":
            return self.lr * self.gamma ** sum(1 for m in self.milestones if epoch >= m)
        if self.kind == "cosine":
            span = max(1, self.epochs - self.warmup_epochs)
            progress = min(1.0, (epoch - self.warmup_epochs) / span)
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        """Set every parameter group's lr to :meth:`lr_at` ``(epoch)``; returns it."""
        lr = self.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def state_dict(self) -> dict:
        return {"kind": self.kind, "lr": self.lr, "epochs": self.epochs, "warmup_epochs": self.warmup_epochs,
                "milestones": list(self.milestones), "gamma": self.gamma, "min_lr": self.min_lr}


def schedule_from_config(optim, epochs: int) -> EpochSchedule:
    """The schedule described by an :class:`nolb.config.OptimConfig`."""
    return EpochSchedule(lr=optim.lr, epochs=epochs, kind=optim.schedule, warmup_epochs=optim.warmup_epochs,
                         milestones=tuple(optim.milestones), gamma=optim.gamma, min_lr=optim.min_lr)
