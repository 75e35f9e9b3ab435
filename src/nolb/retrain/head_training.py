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

from nolb.engine.precision import cpu_has_native_bf16
from nolb.errors import NolbError
from nolb.retrain._pool import working_copy
from nolb.config_stages import HEAD_SAMPLERS, MATMUL_DTYPES

SMALL_HEAD_MACS = 1 << 24  # batch x D x C below which fit_head trains on one thread


def resolve_matmul_dtype(matmul_dtype: str, macs_per_step: int) -> str:
    """``"auto"`` -> ``"bfloat16"`` for a large head (batch x D x C >= SMALL_HEAD_MACS) on a
    CPU with native bf16, else ``"float32"``; explicit values are returned unchanged.

    Measured (docs/PERFORMANCE.md, benchmarks/head_training_speed.py --case imagenet): the
    ImageNet-LT-sized GML head ran 2.9x faster in bf16 with test HM and accuracy within
    0.02 pt of float32; small heads were not measured faster and stay float32.
    """
    if matmul_dtype != "auto":
        return matmul_dtype
    return "bfloat16" if macs_per_step >= SMALL_HEAD_MACS and cpu_has_native_bf16() else "float32"

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
    matmul_dtype: str = "auto",
    num_threads: int | None = None,
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
            bottleneck on CPUs); larger pools are converted batch by batch.  The
            converted pool is remembered while ``features`` is alive (see
            :func:`nolb.retrain._pool.working_copy`), so a selection over many candidate
            heads converts it once.
        matmul_dtype: ``"auto"`` (default: see :func:`resolve_matmul_dtype`), ``"float32"``
            or ``"bfloat16"``: with bfloat16 the pool is
            kept in bfloat16 and the head's two matmuls (logits, weight gradient) run in
            bf16 with float32 accumulation (AMX / AVX-512-BF16: ~10x faster matmuls than
            float32 on such CPUs; an ``nn.Linear`` goes through :class:`_Bf16Linear`,
            other modules through CPU bf16 autocast).  Loss, bias, weights and optimizer
            state stay float32.  Changes results slightly: bf16 keeps 8 significant bits
            of features, weights and gradients in the matmuls.
        num_threads: intra-op threads while training (restored afterwards).  None: one
            thread for small heads (batch x D x C below :data:`SMALL_HEAD_MACS`, where every
            op is too small to gain from threads and pays an OpenMP barrier each), else
            torch's current setting.  On cores shared with other busy processes a single
            thread is much faster even for large heads (each barrier then waits for a
            descheduled thread): pass 1 there.

    Returns:
        A :class:`HeadFit`.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise NolbError(f"retrain: epochs ({epochs}), batch_size ({batch_size}) and lr ({lr}) must be positive")
    if features.shape[0] != labels.shape[0] or features.shape[0] == 0:
        raise NolbError(f"retrain: {features.shape[0]} feature rows but {labels.shape[0]} labels")
    if matmul_dtype not in MATMUL_DTYPES:
        raise NolbError(f"retrain.matmul_dtype: unknown value {matmul_dtype!r}, expected one of {MATMUL_DTYPES}")
    draws = int(draws_per_epoch or features.shape[0])
    steps_per_epoch = max(1, math.ceil(draws / batch_size))
    total_steps = epochs * steps_per_epoch
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = _sgd(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    labels = labels.long().contiguous()
    bf16 = resolve_matmul_dtype(matmul_dtype, batch_size * features.shape[1] * num_classes) == "bfloat16"
    # Convert the pool once (and remember it across calls: a selection trains many heads on
    # the same features): per-batch gathers from a contiguous in-RAM tensor are cheap, while
    # gathering rows of a float16 memory map and converting each batch is not.
    work_dtype = torch.bfloat16 if bf16 else torch.float32
    if features.dtype != work_dtype and features.numel() * _itemsize(work_dtype) <= float32_pool_bytes:
        features = working_copy(features, work_dtype)
    threads = num_threads
    if threads is None:
        threads = 1 if batch_size * features.shape[1] * num_classes < SMALL_HEAD_MACS else torch.get_num_threads()
    previous_threads = torch.get_num_threads()
    if threads != previous_threads:
        torch.set_num_threads(max(1, int(threads)))
    try:
        best, history = _train_epochs(
            module, features, labels, loss_fn, optimizer, generator, evaluate, num_classes=num_classes,
            epochs=epochs, batch_size=batch_size, lr=lr, draws=draws, sampler=sampler, total_steps=total_steps,
            work_dtype=work_dtype,
        )
    finally:
        if torch.get_num_threads() != previous_threads:
            torch.set_num_threads(previous_threads)
    if best[0] is not None:
        module.load_state_dict(best[0])
    module.eval()
    return HeadFit(module=module, best_epoch=best[1], best_score=best[2], history=history)


def _train_epochs(module, features, labels, loss_fn, optimizer, generator, evaluate, *, num_classes, epochs,
                  batch_size, lr, draws, sampler, total_steps, work_dtype):
    """The SGD loop of :func:`fit_head`; returns ``(best, history)``."""
    bf16 = work_dtype == torch.bfloat16
    lrs = [cosine_lr(lr, step, total_steps) for step in range(total_steps)]
    history: list[dict] = []
    best = (None, epochs, None)  # (state, epoch, score)
    step = 0
    for epoch in range(1, epochs + 1):
        module.train()
        order = epoch_indices(labels, draws, sampler, num_classes, generator)
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, draws, batch_size):
            index = order[start : start + batch_size]
            x = features.index_select(0, index)
            if x.dtype != work_dtype:
                x = x.to(work_dtype)
            y = labels.index_select(0, index)
            for group in optimizer.param_groups:
                group["lr"] = lrs[step]
            if bf16 and type(module) is nn.Linear:
                loss = loss_fn(_Bf16Linear.apply(x, module.weight, module.bias), y)
            elif bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = module(x)
                loss = loss_fn(logits.float(), y)
            else:
                loss = loss_fn(module(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            total += loss.detach().double() * index.numel()
        record = {"epoch": epoch, "loss": float(total) / draws}
        if evaluate is not None:
            module.eval()
            score = tuple(evaluate(module))
            record["score"] = list(score)
            if best[2] is None or score > best[2]:
                best = (copy.deepcopy(module.state_dict()), epoch, score)
        history.append(record)
        if not math.isfinite(record["loss"]):
            raise NolbError(f"retrain: the loss became {record['loss']} at epoch {epoch} (lr {lr} too high?)")
    return best, history


class _Bf16Linear(torch.autograd.Function):
    """``x W^T + b`` with bf16 matmuls (float32 logits, float32 weight gradient).

    Like CPU bf16 autocast of ``nn.Linear``, but the weight gradient is computed as
    ``(g^T).contiguous() @ x``: oneDNN's AMX kernel is several times faster on the
    contiguous transposed operand than on the strided view autograd would pass.  The
    features need no gradient (they are frozen).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.has_bias = bias is not None
        logits = torch.nn.functional.linear(x, weight.to(torch.bfloat16)).float()
        return logits + bias if bias is not None else logits

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        grad_weight = (grad.to(torch.bfloat16).t().contiguous() @ x).float()
        grad_bias = grad.sum(0) if ctx.has_bias else None
        return None, grad_weight, grad_bias


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _sgd(params: list, **options) -> torch.optim.SGD:
    """SGD with the fused (one-kernel) update when every parameter allows it, else foreach.

    The fused CPU kernel does the weight decay, momentum and update in one pass over each
    parameter (the default per-parameter loop makes several); same arithmetic, up to
    float rounding.
    """
    if params and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params):
        try:
            return torch.optim.SGD(params, fused=True, **options)
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.SGD(params, foreach=True, **options)


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
