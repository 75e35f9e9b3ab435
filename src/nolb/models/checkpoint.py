"""Loading weights into nolb models: foreign ``.pth``/``.th`` files and nolb's safetensors.

Foreign files (akamaster/LDAM-DRW CIFAR ResNets, torchvision ImageNet weights) are read
with :func:`nolb.io.safe_torch_load` (``weights_only=True``: tensors and plain containers
only, nothing executed).  The state dict is found under ``state_dict``/``model`` when
wrapped, the DataParallel prefix ``module.`` is stripped, and the model's
``foreign_key_renames`` are applied (e.g. ``linear.`` -> ``classifier.``).  Any other
architecture or class count raises a one-line :class:`NolbError` saying which.

nolb's own weights are safetensors files with string metadata (model name, classes).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.io import load_safetensors, safe_torch_load, save_safetensors

_WRAPPER_KEYS = ("state_dict", "model", "model_state", "net")


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NolbError(f"{path}: not a state dict of tensors (nor one under {', '.join(_WRAPPER_KEYS)})")
    return dict(obj)


def normalise_state_dict(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Strip ``module.`` prefixes and apply the model's ``foreign_key_renames``."""
    renames: dict[str, str] = getattr(model, "foreign_key_renames", {})
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old):]
        out[key] = value
    return out


def _classes_of(state: dict[str, torch.Tensor]) -> int | None:
    weight = state.get("classifier.weight")
    return None if weight is None else int(weight.shape[0])


def load_state_into(
    model: nn.Module, state: dict[str, torch.Tensor], *, source: str | os.PathLike, skip_classifier: bool = False
) -> None:
    """Copy ``state`` into ``model`` after strict checks, raising NolbError on any mismatch.

    Args:
        model: The target nolb model.
        state: Normalised state dict (see :func:`normalise_state_dict`).
        source: File name for the error messages.
        skip_classifier: Load only the backbone; the classifier keeps its initialisation
            (pretrained ImageNet backbone for a dataset with another class count).
    """
    own = model.state_dict()
    if skip_classifier:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        own = {k: v for k, v in own.items() if not k.startswith("classifier.")}
    # Checkpoints saved before PyTorch 0.4.1 have no BatchNorm step counters: keep ours.
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked") and k not in state}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise NolbError(
            f"{source}: checkpoint is for another architecture than {type(model).__name__}: "
            f"parameter names differ: {'; '.join(detail)}"
        )
    theirs, ours = _classes_of(state), _classes_of(own)
    if theirs is not None and ours is not None and theirs != ours:
        raise NolbError(f"{source}: checkpoint has {theirs} classes, the model has {ours} (use skip_classifier to load the backbone only)")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise NolbError(
                f"{source}: checkpoint is for another architecture: {key} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=not skip_classifier)


def load_foreign_checkpoint(model: nn.Module, path: str | os.PathLike, *, skip_classifier: bool = False) -> nn.Module:
    """Load a foreign ``torch.save`` file (``.pth``/``.th``/``.pt``) into ``model``.

    Args:
        model: The nolb model to fill.
        path: The checkpoint file.
        skip_classifier: Load only the backbone.

    Returns:
        ``model``, with the weights loaded.
    """
    path = Path(path)
    state = normalise_state_dict(_unwrap(safe_torch_load(path), path), model)
    load_state_into(model, state, source=path, skip_classifier=skip_classifier)
    return model


def save_weights(path: str | os.PathLike, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """Atomically write ``model``'s state dict (unwrapping DDP / compile) as safetensors."""
    save_safetensors(path, unwrap_model(model).state_dict(), metadata=metadata)


def load_weights(model: nn.Module, path: str | os.PathLike, *, skip_classifier: bool = False) -> dict[str, str]:
    """Load nolb safetensors weights into ``model``; returns the file's metadata."""
    tensors, metadata = load_safetensors(path)
    load_state_into(model, tensors, source=path, skip_classifier=skip_classifier)
    return metadata


def load_any_weights(model: nn.Module, path: str | os.PathLike, *, skip_classifier: bool = False) -> nn.Module:
    """Load ``.safetensors`` (nolb) or any ``torch.save`` file (foreign) into ``model``."""
    if str(path).endswith(".safetensors"):
        load_weights(model, path, skip_classifier=skip_classifier)
        return model
    return load_foreign_checkpoint(model, path, skip_classifier=skip_classifier)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
