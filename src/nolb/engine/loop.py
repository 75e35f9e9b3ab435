"""One training epoch: forward under autocast, (mixup) loss, backward, SGD step.

Mixup (Zhang et al. 2018; MiSLAS stage 1): ``x~ = lam x + (1 - lam) x[perm]`` and
``L = lam L(z, y) + (1 - lam) L(z, y[perm])`` with ``lam ~ Beta(alpha, alpha)``.
A non-finite loss stops the epoch with :class:`NonFiniteLoss` before the step is taken,
so the parameters (and the last checkpoint) stay those of the last good step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from nolb.engine.distributed import broadcast_flag
from nolb.engine.precision import autocast_context
from nolb.progress import Progress


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite at ``step`` (0-based) of the epoch."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"non-finite loss {value} at step {step + 1}")
        self.step = step
        self.value = value


@dataclass
class EpochStats:
    """What one epoch did."""

    loss: float
    steps: int
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    mixup_alpha: float = 0.0,
    mixup_generator: torch.Generator | None = None,
    max_steps: int | None = None,
    progress: bool = False,
    description: str = "",
) -> EpochStats:
    """Train ``model`` for one pass over ``loader``.

    Args:
        model: The (possibly DDP-wrapped / compiled) model, put in train mode here.
        loader: Yields ``(images, labels)`` already on ``device``.
        loss_fn: ``loss_fn(logits, target) -> scalar``.
        optimizer: The optimizer (its lr already set for this epoch).
        scaler: GradScaler (enabled only for fp16).
        device: The training device.
        precision: "fp32", "bf16" or "fp16".
        channels_last: Convert batches to channels-last memory format.
        mixup_alpha: > 0 enables mixup.
        mixup_generator: Random source for mixup.
        max_steps: Stop after this many steps (smoke runs).
        progress: Show progress (``nolb.progress``: a bar on a terminal, a plain line every
            30 s otherwise, rank 0 only) with loss, lr and images/s.
        description: The progress label.

    Returns:
        The epoch's mean loss, steps, images and wall time.

    Raises:
        NonFiniteLoss: the loss was NaN or infinite (the step is not applied).
    """
    if mixup_alpha > 0:
        from nolb.data import mixup_batch
    model.train()
    total = len(loader) if max_steps is None else min(len(loader), max_steps)
    bar = Progress(total, desc=description, unit="batch", quiet=None if progress else True, announce=False)
    loss_sum, steps, images, start = 0.0, 0, 0, time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    for x, y in loader:
        if max_steps is not None and steps >= max_steps:
            break
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, precision):
            if mixup_alpha > 0:
                x, y_a, y_b, lam = mixup_batch(x, y, mixup_alpha, mixup_generator)
                logits = model(x)
                loss = lam * loss_fn(logits, y_a) + (1.0 - lam) * loss_fn(logits, y_b)
            else:
                loss = loss_fn(model(x), y)
        value = float(loss.detach())
        if broadcast_flag(not math.isfinite(value), device):
            bar.close()
            raise NonFiniteLoss(steps, value)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_sum += value
        steps += 1
        images += int(y.shape[0])
        elapsed = time.perf_counter() - start
        bar.update(1, loss=f"{value:.4f}", lr=f"{lr:.4g}", img_s=f"{images / max(elapsed, 1e-9):.0f}")
    bar.close()
    return EpochStats(loss=loss_sum / max(steps, 1), steps=steps, images=images, seconds=time.perf_counter() - start)
