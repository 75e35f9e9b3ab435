"""Train a classifier head on cached (frozen-backbone) features.

The recipe of METHOD.md section 4: SGD with momentum 0.9, weight decay, a cosine learning
rate decayed per iteration from ``lr`` to 0 over ``epochs``; the head is initialised from
the original head (``init="original"``) or afresh.  With K augmented views cached, the
feature pool has ``M = K N`` rows and one epoch draws ``N`` of them, so an epoch sees as
many samples as an epoch of online training does.

Samplers over the pool (each draw picks a class, then a row of that class, or a row):

* ``instance``:       uniform over rows (every image equally often);
* ``class_balanced``: class uniform, ``P(c) = 1 / C`` (cRT);
* ``sqrt``:           ``P(c) ∝ sqrt(n_c)``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.retrain.config import HEAD_SAMPLERS

Score = tuple  # compared lexicographically; larger is better


@dataclass
class HeadFit:
    """The outcome of :func:`fit_head`.

    Attributes:
        module: the trained module (the best epoch's weights when an evaluator was given).
        best_epoch: 1-based epoch whose weights were kept (``epochs`` without an evaluator).
        best_score: the evaluator's score of that epoch, or None.
        history: per-epoch dicts with ``epoch``, ``loss`` and (when evaluated) ``score``.
    """

    module: nn.Module
    best_epoch: int
    best_score: Score | None
    history: list[dict] = field(default_factory=list)


def epoch_indices(
    labels: torch.Tensor, num_draws: int, sampler: str, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """Row indices of one epoch drawn from the feature pool.

    Args:
        labels: (M,) int64 labels of the pool rows.
        num_draws: how many rows the epoch draws.
        sampler: ``instance``, ``class_balanced`` or ``sqrt`` (see the module docstring).
        num_classes: C.
        generator: the random generator (seeded by the caller).

    Returns:
        (num_draws,) int64 indices into the pool.
    """
    if sampler == "instance":
        if num_draws <= labels.numel():
            return torch.randperm(labels.numel(), generator=generator)[:num_draws]
        return torch.randint(labels.numel(), (num_draws,), generator=generator)
    if sampler not in HEAD_SAMPLERS:
        raise NolbError(f"retrain.sampler: unknown sampler {sampler!r}, expected one of {HEAD_SAMPLERS}")
    counts = torch.bincount(labels, minlength=num_classes)
    present = counts > 0
    weights = present.double() if sampler == "class_balanced" else counts.double().sqrt()
    classes = torch.multinomial(weights, num_draws, replacement=True, generator=generator)
    order = torch.argsort(labels, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    offsets = (torch.rand(num_draws, generator=generator, dtype=torch.float64) * counts[classes]).long()
    return order[starts[classes] + offsets]


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """``lr_t = lr / 2 (1 + cos(pi t / T))`` for iteration ``t`` of ``T``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / max(total_steps, 1)))


def fit_head(
    module: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    *,
    num_classes: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 2e-4,
    momentum: float = 0.9,
    sampler: str = "instance",
    draws_per_epoch: int | None = None,
    seed: int = 0,
    evaluate: Callable[[nn.Module], Score] | None = None,
    float32_pool_bytes: int = 4 << 30,
) -> HeadFit:
    """Train ``module`` (the trainable part of a head) on pooled feature rows.

    Args:
        module: maps (B, D) float32 features to (B, C) logits; its parameters are trained.
        features: (M, D) features (any float dtype; batches are cast to float32).
        labels: (M,) int64 labels.
        loss_fn: ``loss(logits, target) -> scalar``.
        num_classes: C.
        epochs: number of epochs (each draws ``draws_per_epoch`` rows).
        batch_size: rows per SGD step.
        lr: peak learning rate of the cosine schedule.
        weight_decay, momentum: SGD settings.
        sampler: how rows are drawn (see :func:`epoch_indices`).
        draws_per_epoch: rows per epoch (default M).
        seed: seeds the row order.
        evaluate: optional callback scoring the module after each epoch; the best epoch's
            weights are kept (early stopping with full patience).
        float32_pool_bytes: convert a half-precision pool to float32 once when it fits in
            this many bytes (random-row gathers then skip a per-batch conversion, the
            bottleneck on CPUs); larger pools are converted batch by batch.

    Returns:
        A :class:`HeadFit`.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise NolbError(f"retrain: epochs ({epochs}), batch_size ({batch_size}) and lr ({lr}) must be positive")
    if features.shape[0] != labels.shape[0] or features.shape[0] == 0:
        raise NolbError(f"retrain: {features.shape[0]} feature rows but {labels.shape[0]} labels")
    draws = int(draws_per_epoch or features.shape[0])
    steps_per_epoch = max(1, math.ceil(draws / batch_size))
    total_steps = epochs * steps_per_epoch
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    labels = labels.long()
    if features.dtype != torch.float32 and features.numel() * 4 <= float32_pool_bytes:
        features = features.float()
    history: list[dict] = []
    best = (None, epochs, None)  # (state, epoch, score)
    step = 0
    for epoch in range(1, epochs + 1):
        module.train()
        order = epoch_indices(labels, draws, sampler, num_classes, generator)
        total, seen = 0.0, 0
        for start in range(0, draws, batch_size):
            index = order[start : start + batch_size]
            x = features[index].float()
            y = labels[index]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(lr, step, total_steps)
            loss = loss_fn(module(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total += float(loss.detach()) * len(index)
            seen += len(index)
        record = {"epoch": epoch, "loss": total / seen}
        if evaluate is not None:
            module.eval()
            score = tuple(evaluate(module))
            record["score"] = list(score)
            if best[2] is None or score > best[2]:
                best = (copy.deepcopy(module.state_dict()), epoch, score)
        history.append(record)
        if not math.isfinite(record["loss"]):
            raise NolbError(f"retrain: the loss became {record['loss']} at epoch {epoch} (lr {lr} too high?)")
    if best[0] is not None:
        module.load_state_dict(best[0])
    module.eval()
    return HeadFit(module=module, best_epoch=best[1], best_score=best[2], history=history)


def linear_head_from(original: nn.Module | None, feature_dim: int, num_classes: int, init: str, seed: int = 0) -> nn.Linear:
    """A new ``nn.Linear`` head: a copy of ``original`` (``init="original"``) or fresh.

    A fresh head has zero bias and weights drawn as ``nn.Linear`` does (Kaiming uniform),
    from ``seed``.  ``init="original"`` needs a linear original head with matching shape
    (a cosine/normed head cannot be copied into a plain linear layer).

    Raises:
        NolbError: an unknown ``init`` or an original head that cannot be copied.
    """
    if init not in ("original", "fresh"):
        raise NolbError(f"retrain.init: unknown value {init!r}, expected 'original' or 'fresh'")
    head = nn.Linear(feature_dim, num_classes)
    if init == "fresh":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head.reset_parameters()
        nn.init.zeros_(head.bias)
        return head
    if not isinstance(original, nn.Linear) or tuple(original.weight.shape) != (num_classes, feature_dim):
        raise NolbError(
            f"retrain.init: 'original' needs an nn.Linear({feature_dim}, {num_classes}) head, "
            f"got {type(original).__name__}; use init=fresh"
        )
    with torch.no_grad():
        head.weight.copy_(original.weight.detach().float().cpu())
        if original.bias is not None:
            head.bias.copy_(original.bias.detach().float().cpu())
        else:
            head.bias.zero_()
    return head
