"""Evaluation: per-class recall over a loader, counting every image exactly once under DDP.

Each rank runs its own disjoint shard (the data package's eval loaders never pad) into a
:class:`nolb.metrics.RecallMeter`; the confusion matrices are then summed over ranks
(``all_reduce``), so the report is over the whole split on every rank.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from nolb.engine.precision import autocast_context
from nolb.metrics import RecallMeter


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    num_classes: int,
    *,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
) -> RecallMeter:
    """Run ``model`` over ``loader`` in eval mode and count predictions.

    Args:
        model: Maps (N, C, H, W) images to (N, num_classes) logits.
        loader: Yields ``(images, labels)`` (this rank's shard under DDP).
        num_classes: Number of classes C.
        device: Where the model runs.
        precision: "fp32", "bf16" or "fp16" autocast.
        channels_last: Convert each batch to channels-last memory format.

    Returns:
        The meter, already all-reduced over the process group when there is one.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    meter = RecallMeter(num_classes)
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, precision):
            logits = model(images)
        meter.update(logits.float(), labels)
    meter.all_reduce()
    model.train(was_training)
    return meter
