"""One training epoch: forward under autocast, (mixup) loss, backward, SGD step.

Mixup (Zhang et al. 2018; MiSLAS stage 1): ``x~ = lam x + (1 - lam) x[perm]`` and
``L = lam L(z, y) + (1 - lam) L(z, y[perm])`` with ``lam ~ Beta(alpha, alpha)``.
A non-finite loss stops the epoch with :class:`NonFiniteLoss`.  Reading the loss is a
host sync: on the CPU it costs nothing (measured, docs/PERFORMANCE.md) and the loss is
checked before every step, so the parameters stay those of the last good step; on an
accelerator the losses stay on the device and are checked every ``check_every`` steps
(and at the end of the epoch), so a bad step may have been applied to the in-memory
parameters when the error is raised, while the last checkpoint (written only after a
finished epoch) is still good.
"""

from __future__ import annotations

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
    check_every: int | None = None,
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
        check_every: Steps between host reads of the loss (NaN check, mean loss); default 1
            on the CPU (free there) and 50 on an accelerator (no per-step sync).

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
    if check_every is None:
        check_every = 1 if device.type == "cpu" else 50
    loss_sum, steps, images, start = 0.0, 0, 0, time.perf_counter()
    pending: list[torch.Tensor] = []  # detached losses not yet read on the host
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
        pending.append(loss.detach().float())
        if len(pending) >= check_every:
            loss_sum += _read_losses(pending, steps - len(pending) + 1, device, bar)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        steps += 1
        images += int(y.shape[0])
        elapsed = time.perf_counter() - start
        postfix = {"lr": f"{lr:.4g}", "img_s": f"{images / max(elapsed, 1e-9):.0f}"}
        if progress and steps % check_every == 0:  # a host read only where the loss is read anyway
            postfix["loss"] = f"{float(loss.detach()):.4f}"
        bar.update(1, **postfix)
    if pending:
        loss_sum += _read_losses(pending, steps - len(pending), device, bar)
    bar.close()
    return EpochStats(loss=loss_sum / max(steps, 1), steps=steps, images=images, seconds=time.perf_counter() - start)


def _read_losses(pending: list[torch.Tensor], first_step: int, device: torch.device, bar) -> float:
    """Sum of the pending losses read in one host sync; NonFiniteLoss names the first bad step.

    Empties ``pending``.  ``first_step`` is the 0-based step of ``pending[0]``.
    """
    values = torch.stack(pending).cpu()
    pending.clear()
    bad = ~torch.isfinite(values)
    if broadcast_flag(bool(bad.any()), device):
        bar.close()
        index = int(bad.nonzero()[0, 0]) if bool(bad.any()) else 0
        raise NonFiniteLoss(first_step + index, float(values[index]))
    return float(values.sum())
