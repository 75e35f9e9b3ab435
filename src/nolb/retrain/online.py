"""Online stage 2: the frozen backbone runs on freshly augmented batches every epoch.

The faithful (and slower) variant of cached mode: the same head, loss, optimiser and
cosine schedule, but every epoch sees new augmentations.  MiSLAS' "shift BN" option
re-estimates the backbone's BatchNorm running statistics on the training data (one pass
with the backbone in train mode, cumulative averages, no gradient) before the head is
trained; the backbone's weights never change.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.retrain.head_training import cosine_lr
from nolb.retrain.inference import backbone_features


@torch.no_grad()
def reestimate_batchnorm(backbone: nn.Module, loader: Iterable, device: str | torch.device = "cpu") -> int:
    """Replace every BatchNorm's running mean/var by their average over one pass of ``loader``.

    Returns:
        The number of BatchNorm layers updated (0: nothing to shift).
    """
    norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the pass
        m.train()
    try:
        for x, _ in loader:
            backbone(x.to(device))
    finally:
        for m, (momentum, training) in zip(norms, saved):
            m.momentum = momentum
            m.train(training)
    backbone.eval()
    return len(norms)


def fit_head_online(
    head: nn.Module,
    backbone: nn.Module,
    make_loader: Callable[[int], Iterable],
    loss_fn: nn.Module,
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 2e-4,
    momentum: float = 0.9,
    device: str | torch.device = "cpu",
) -> list[dict]:
    """Train ``head`` on features of the frozen ``backbone`` computed batch by batch.

    Args:
        head: the trainable head (moved to ``device``).
        backbone: the frozen feature extractor (kept in eval mode, no gradient).
        make_loader: ``epoch -> loader`` of augmented ``(x, y)`` training batches.
        loss_fn: ``loss(logits, target)``.
        epochs, lr, weight_decay, momentum: the recipe (cosine decay per iteration).
        device: where the backbone and head run.

    Returns:
        Per-epoch records ``{"epoch", "loss"}``.
    """
    head.to(device)
    loss_fn.to(device)
    backbone.eval()
    optimizer = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=lr,
                                momentum=momentum, weight_decay=weight_decay)
    history, step, total_steps = [], 0, None
    for epoch in range(1, epochs + 1):
        loader = make_loader(epoch - 1)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch - 1)
        if total_steps is None:
            total_steps = epochs * max(1, len(loader))
        head.train()
        total, seen = 0.0, 0
        for x, y in loader:
            features = backbone_features(backbone, x.to(device))  # no grad; channels-last, CPU chunks
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, step, total_steps)
            loss = loss_fn(head(features), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total += float(loss.detach()) * len(y)
            seen += len(y)
        if seen == 0:
            raise NolbError("online retraining: the training loader yielded no batch")
        history.append({"epoch": epoch, "loss": total / seen})
        if not math.isfinite(total):
            raise NolbError(f"online retraining: the loss became {total} at epoch {epoch}")
    head.eval()
    return history
