"""Training steps of the stage-1 methods that need more than ``loss(model(x), y)``.

* PaCo (``loss.name=paco``): two augmented views of each batch; view 1 goes through the
  query encoder (classifier logits + projection), view 2 through the momentum key encoder
  (updated inside the forward pass), the loss contrasts the queries with the centres, the
  batch, the keys and the queue, and after the optimizer step the keys are enqueued
  (all processes' keys under DDP).  The model is :class:`nolb.models.paco.PaCoModel`,
  built by :func:`nolb.engine.components.build_model_from_config`.
* DiVE (``loss.name=dive``): a frozen teacher (the run directory named by
  ``loss.options.teacher``, checked to have the same data and classes) scores the same
  augmented batch in eval mode, without gradients; the student fits BSCE plus the
  distillation term.

:func:`epoch_function` returns the epoch function for these losses (None for the others);
it has the signature of :func:`nolb.engine.loop.train_one_epoch`, so the trainer calls
whichever it got in the same way.  Mixup is refused for both.
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nolb.engine.distributed import broadcast_flag
from nolb.engine.loop import EpochStats, NonFiniteLoss
from nolb.engine.precision import autocast_context
from nolb.errors import NolbError
from nolb.models import unwrap_model

SPECIAL_LOSSES = ("paco", "dive")


def epoch_function(config: Any, model: nn.Module, loss_fn: nn.Module, data: Any,
                   device: torch.device) -> Callable[..., EpochStats] | None:
    """The epoch function for PaCo or DiVE (None for an ordinary loss)."""
    name = config.loss.name
    if name not in SPECIAL_LOSSES:
        return None
    if config.loss.mixup_alpha > 0:
        raise NolbError(f"config key 'loss.mixup_alpha' must be 0 with loss.name={name} (mixup is not part of {name})")
    if name == "paco":
        step: Any = PaCoStep(unwrap_model(model), loss_fn)
    else:
        step = DiVEStep(load_teacher(loss_fn.teacher, config, data, device), loss_fn)
    return partial(run_epoch, step)


class PaCoStep:
    """Two views -> (logits, query, key) -> PaCo loss; enqueue the keys after the step."""

    def __init__(self, model: nn.Module, loss_fn: nn.Module) -> None:
        if not hasattr(model, "enqueue"):
            raise NolbError("loss.name=paco needs the PaCo model wrapper (build the model with "
                            "nolb.engine.components.build_model_from_config)")
        self.model, self.loss_fn = model, loss_fn
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def batches(self, loader: Any) -> Iterator[tuple]:
        return two_view_batches(loader)

    def loss(self, net: nn.Module, batch: tuple) -> torch.Tensor:
        view1, view2, y = batch
        logits, query, key = net(view1, view2)
        self._pending = (key, y)
        return self.loss_fn(logits, y, query, key, self.model.queue, self.model.queue_labels)

    def after_step(self) -> None:
        key, y = self._pending
        self.model.enqueue(key, y)
        self._pending = None


class DiVEStep:
    """The teacher's logits on the same batch (eval mode, no gradient) -> DiVE loss."""

    def __init__(self, teacher: nn.Module, loss_fn: nn.Module) -> None:
        self.teacher, self.loss_fn = teacher, loss_fn

    def batches(self, loader: Any) -> Iterator[tuple]:
        return iter(loader)

    def loss(self, net: nn.Module, batch: tuple) -> torch.Tensor:
        x, y = batch
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return self.loss_fn(net(x), y, teacher_logits)

    def after_step(self) -> None:
        pass


def run_epoch(step: Any, model: nn.Module, loader: Any, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
              scaler: Any, *, device: torch.device, precision: str = "fp32", channels_last: bool = False,
              mixup_alpha: float = 0.0, mixup_generator: Any = None, max_steps: int | None = None,
              progress: bool = False, description: str = "") -> EpochStats:
    """One epoch of ``step`` (same arguments and result as ``train_one_epoch``; no mixup)."""
    from nolb.progress import Progress

    model.train()
    total = len(loader) if max_steps is None else min(len(loader), max_steps)
    bar = Progress(total, desc=description, unit="step", quiet=not progress)
    loss_sum, steps, images, start = 0.0, 0, 0, time.perf_counter()
    for batch in step.batches(loader):
        if max_steps is not None and steps >= max_steps:
            break
        if channels_last:
            batch = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in batch)
        with autocast_context(device, precision):
            loss = step.loss(model, batch)
        value = float(loss.detach())
        if broadcast_flag(not math.isfinite(value), device):
            bar.close()
            raise NonFiniteLoss(steps, value)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        step.after_step()
        loss_sum += value
        steps += 1
        images += int(batch[-1].shape[0])
        bar.update(1, loss=f"{value:.4f}")
    bar.close()
    return EpochStats(loss=loss_sum / max(steps, 1), steps=steps, images=images, seconds=time.perf_counter() - start)


def two_view_batches(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(view1, view2, y)`` batches: the loader's images augmented twice, independently.

    The fast path draws both views from the loader's own (seed, epoch, rank) generator, so
    a resumed epoch repeats them exactly; the per-image path applies the loader's transform
    twice per image.
    """
    from nolb.data.batch_augment import augment_batch, normalize
    from nolb.data.loader import ImageBatchLoader, TensorBatchLoader

    if isinstance(loader, TensorBatchLoader):
        for index, generator in _tensor_batches(loader):
            images = loader.dataset.images[index]
            views = [normalize(augment_batch(images, loader.spec, generator), loader.mean, loader.std, loader.constants)
                     for _ in range(2)]
            yield views[0], views[1], loader.dataset.labels[index]
        return
    if isinstance(loader, ImageBatchLoader):
        inner = loader.loader
        pairs = DataLoader(_TwoViews(inner.dataset.dataset, inner.dataset.transform), batch_size=inner.batch_size,
                           sampler=loader.sampler, drop_last=inner.drop_last, num_workers=inner.num_workers,
                           pin_memory=inner.pin_memory)
        for view1, view2, y in pairs:
            yield (view1.to(loader.device, non_blocking=True), view2.to(loader.device, non_blocking=True),
                   y.to(loader.device, non_blocking=True))
        return
    raise NolbError(f"loss.name=paco cannot draw two views from a {type(loader).__name__}")


def _tensor_batches(loader: Any) -> Iterator[tuple[torch.Tensor, torch.Generator]]:
    """The fast loader's batch indices with its augmentation generator (as in its ``__iter__``)."""
    import numpy as np

    generator = torch.Generator(device=loader.device)
    state = np.random.SeedSequence([loader.seed, loader.epoch, loader.rank]).generate_state(1, dtype=np.uint64)[0]
    generator.manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)
    order = torch.as_tensor(list(iter(loader.sampler)), dtype=torch.int64).to(loader.device)
    for b in range(len(loader)):
        yield order[b * loader.batch_size:(b + 1) * loader.batch_size], generator


class _TwoViews(Dataset):
    def __init__(self, dataset: Dataset, transform: Callable) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return self.transform(image), self.transform(image), int(label)


def load_teacher(teacher: Any, config: Any, data: Any, device: torch.device) -> nn.Module:
    """The DiVE teacher: a finished run with the same data and classes, frozen, in eval mode."""
    from nolb.engine.load import load_trained

    if teacher is None:
        raise NolbError("loss 'dive' needs a teacher: set loss.options.teacher=RUN_DIR (a finished BSCE run)")
    path = Path(str(teacher))
    if not (path / "config.yaml").is_file():
        raise NolbError(f"loss.options.teacher: {path} is not a nolb run directory (no config.yaml); "
                        "train the BSCE teacher first or point loss.options.teacher at one")
    if not (path / "checkpoints" / "last.safetensors").is_file():
        raise NolbError(f"loss.options.teacher: {path} has no checkpoint (train the teacher first)")
    model, teacher_config, _ = load_trained(path, "best", data=data)
    ours, theirs = config.data, teacher_config.data
    for key in ("name", "imbalance_ratio", "options"):
        if getattr(ours, key) != getattr(theirs, key):
            raise NolbError(f"loss.options.teacher: {path} was trained on data.{key}={getattr(theirs, key)!r}, "
                            f"this run uses {getattr(ours, key)!r}")
    counts = _teacher_counts(path)
    if counts is not None and counts != [int(c) for c in data.class_counts.tolist()]:
        raise NolbError(f"loss.options.teacher: {path} was trained with other class counts than this run's data")
    with torch.no_grad():
        probe = model.classifier.weight if hasattr(model.classifier, "weight") else None
    if probe is not None and probe.shape[0] != data.num_classes:
        raise NolbError(f"loss.options.teacher: {path} predicts {probe.shape[0]} classes, this run has {data.num_classes}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.to(device).eval()


def _teacher_counts(path: Path) -> list[int] | None:
    """The training class counts recorded in the teacher's ``run.json`` (None if absent)."""
    from nolb.io import read_json

    try:
        info = read_json(path / "run.json").get("data", {})
    except (OSError, ValueError):
        return None
    counts = info.get("class_counts", info.get("counts"))
    return [int(c) for c in counts] if isinstance(counts, list) else None
