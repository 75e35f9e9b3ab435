"""Building the pieces of a run from its config: device, data, model, loss, optimizer."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch
from torch import nn

from nolb.config import Config
from nolb.errors import NolbError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is ``cuda:<local rank>`` when CUDA is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NolbError(f"config key 'train.device' is {name!r} but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


@contextlib.contextmanager
def determinism(deterministic: bool) -> Iterator[None]:
    """Deterministic kernels (bit-identical reruns) or cuDNN autotuning, restored on exit.

    Deterministic mode leaves ``torch.utils.deterministic.fill_uninitialized_memory`` off:
    filling every new tensor with NaN only exposes reads of uninitialised memory (none in
    nolb) and cost 8-9% of a SmallCNN training step on the CPU (docs/PERFORMANCE.md).
    """
    import torch.utils.deterministic as det

    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark, det.fill_uninitialized_memory)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    det.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]
        det.fill_uninitialized_memory = previous[3]


def build_data_from_config(config: Config) -> Any:
    """``nolb.data.build_data`` with the config's data section."""
    from nolb.data import build_data

    options = dict(config.data.options)
    if config.data.root is not None:
        options["root"] = config.data.root
    if config.data.imbalance_ratio is not None:
        options["imbalance_ratio"] = config.data.imbalance_ratio
    return build_data(config.data.name, **options)


def build_model_from_config(config: Config, data: Any, *, initial_weights: bool = True) -> nn.Module:
    """The configured model; ``initial_weights=False`` skips ``model.weights`` (a checkpoint follows)."""
    from nolb.models import build_model

    m = config.model
    if initial_weights and m.options.get("trainable_blocks") is not None and not m.weights:
        raise NolbError("config key 'model.weights' must name a local pretrained weights file when "
                        "model.options.trainable_blocks freezes part of the backbone")
    model = build_model(m.name, data.num_classes, in_channels=data.in_channels, head=m.head,
                        weights=m.weights if initial_weights else None,
                        skip_classifier=m.skip_classifier, **m.options)
    if config.loss.name == "paco":  # projection, momentum encoder and queue (nolb.models.paco)
        model = _paco_model(model, config, data)
    return model


def _paco_model(model: nn.Module, config: Config, data: Any) -> nn.Module:
    from nolb.losses import build_loss
    from nolb.models.paco import PaCoModel

    loss = build_loss("paco", data.class_counts, **config.loss.options)  # checks and defaults the options
    return PaCoModel(model, data.num_classes, queue_size=loss.queue_size, projection_dim=loss.projection_dim,
                     momentum=loss.momentum)


def build_loss_from_config(config: Config, data: Any) -> nn.Module:
    from nolb.losses import build_loss

    return build_loss(config.loss.name, data.class_counts, **config.loss.options)


def build_optimizer(config: Config, model: nn.Module) -> torch.optim.SGD:
    """SGD over the trainable parameters (momentum, weight decay, optional Nesterov)."""
    o = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise NolbError("the model has no trainable parameter (check model.options.trainable_blocks)")
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)


def build_loaders(config: Config, data: Any, *, device: torch.device, rank: int, world_size: int) -> tuple[Any, Any]:
    """Training loader (this rank's share of the global batch) and validation loader."""
    from nolb.data import build_loader

    t = config.train
    if t.batch_size % world_size:
        raise NolbError(f"config key 'train.batch_size' ({t.batch_size}) must be divisible by the {world_size} processes")
    common = dict(preset=data.preset, mean=data.mean, std=data.std, image_size=data.image_size, device=device, rank=rank, world_size=world_size,
                  num_workers=config.data.num_workers, channels_last=t.channels_last, seed=t.seed)
    train_loader = build_loader(data.train, batch_size=t.batch_size // world_size, train=True, augment=config.data.augment,
                                sampler=config.data.sampler, class_counts=data.class_counts,
                                total_epochs=t.epochs, **common)
    val_loader = None
    if data.val is not None:
        val_loader = build_loader(data.val, batch_size=t.eval_batch_size, train=False, **common)
    return train_loader, val_loader


def eval_loader(config: Config, data: Any, dataset: Any, *, device: torch.device, rank: int = 0, world_size: int = 1) -> Any:
    """A non-augmented, unpadded loader over ``dataset`` (this rank's shard)."""
    from nolb.data import build_loader

    return build_loader(dataset, batch_size=config.train.eval_batch_size, train=False, preset=data.preset, mean=data.mean,
                        std=data.std, image_size=data.image_size, device=device, rank=rank, world_size=world_size,
                        num_workers=config.data.num_workers, channels_last=config.train.channels_last, seed=config.train.seed)
