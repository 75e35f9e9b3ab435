"""Open what the stage-2/3 commands start from: a nolb run or a plain PyTorch checkpoint.

A nolb run directory gives its model, config and data (``nolb.engine.load_trained``).
A checkpoint file needs a config naming the architecture (``model.name``: a nolb model,
torchvision ResNets included) and the data; foreign files are read with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from nolb.errors import NolbError


@dataclass
class LoadedModel:
    """A trained model with the data and the description needed to rebuild it."""

    model: nn.Module
    data: Any
    classifier: str
    architecture: dict
    config: Any = None
    run_dir: Path | None = None


def load_run_or_checkpoint(target: str | Path, *, config: Any = None) -> LoadedModel:
    """Open ``target``: a run directory (has ``config.yaml``) or a weights file.

    A weights file needs ``config`` (a ``nolb.config.Config``): its ``model.name`` (a nolb
    model or a wrapped torchvision ResNet) and its data section.
    """
    target = Path(target)
    if target.is_dir():
        if not (target / "config.yaml").is_file():
            raise NolbError(f"{target}: not a nolb run directory (no config.yaml)")
        from nolb.engine import load_trained

        model, run_config, data = load_trained(target)
        return LoadedModel(model, data, "classifier", _architecture(run_config, data), run_config, target)
    if not target.is_file():
        raise NolbError(f"{target}: no such run directory or checkpoint file")
    if config is None:
        raise NolbError(f"{target}: a checkpoint file needs a CONFIG naming its model and data "
                        "(nolb retrain FILE CONFIG [key=value ...])")
    from nolb.engine.components import build_data_from_config
    from nolb.models import build_model
    from nolb.models.registry import TORCHVISION_PREFIX

    data = build_data_from_config(config)
    name = config.model.name
    if name.startswith(TORCHVISION_PREFIX):  # a plain torchvision classifier (state dict): its own final layer
        model = _torchvision_model(name.removeprefix(TORCHVISION_PREFIX), data.num_classes, target)
        attribute = "fc" if isinstance(getattr(model, "fc", None), nn.Linear) else "classifier"
        architecture = {**_architecture(config, data), "classifier": attribute}
        return LoadedModel(model.eval(), data, attribute, architecture, config, None)
    model = build_model(name, data.num_classes, in_channels=data.in_channels, head=config.model.head,
                        weights=str(target), **dict(config.model.options))
    return LoadedModel(model.eval(), data, "classifier", _architecture(config, data), config, None)


def _architecture(config: Any, data: Any) -> dict:
    m = config.model
    return {"model": m.name, "num_classes": data.num_classes, "in_channels": data.in_channels, "head": m.head,
            "options": dict(m.options), "classifier": "classifier"}


def _torchvision_model(name: str, num_classes: int, weights: Path) -> nn.Module:
    """torchvision's ``name`` with ``num_classes`` outputs and the state dict in ``weights``."""
    import torchvision

    from nolb.io import safe_torch_load

    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except ValueError:
        raise NolbError(f"model.name=torchvision/{name}: not a torchvision model name") from None
    state = safe_torch_load(weights)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise NolbError(f"{weights}: expected a state dict, found {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise NolbError(f"{weights}: does not fit torchvision {name} ({str(exc).splitlines()[0]})") from None
    return model
