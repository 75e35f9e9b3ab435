"""Open what the stage-2/3 commands start from: a nolb run or a plain PyTorch checkpoint.

A nolb run directory gives its model, config and data (``nolb.engine.load_trained``).
A checkpoint file needs the architecture (``--model``: a nolb model name, or any
torchvision classification model name) and the data recipe (``--data``); foreign files are
read with ``weights_only=True``.
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


def load_run_or_checkpoint(target: str | Path, *, model_name: str | None = None, data_config: str | None = None,
                           classifier: str | None = None) -> LoadedModel:
    """Open ``target``: a run directory (has ``config.yaml``) or a weights file."""
    target = Path(target)
    if target.is_dir():
        if not (target / "config.yaml").is_file():
            raise NolbError(f"{target}: not a nolb run directory (no config.yaml)")
        from nolb.engine import load_trained

        model, config, data = load_trained(target)
        m = config.model
        arch = {"model": m.name, "num_classes": data.num_classes, "in_channels": data.in_channels, "head": m.head,
                "options": dict(m.options), "classifier": "classifier"}
        return LoadedModel(model, data, "classifier", arch, config, target)
    if not target.is_file():
        raise NolbError(f"{target}: no such run directory or checkpoint file")
    if not model_name or not data_config:
        raise NolbError(f"{target}: a checkpoint file needs --model NAME and --data CONFIG (the data recipe)")
    from nolb.config import load_config
    from nolb.engine.components import build_data_from_config
    from nolb.models import MODEL_NAMES, build_model

    config = load_config(data_config)
    data = build_data_from_config(config)
    if model_name in MODEL_NAMES or model_name.startswith("timm/"):  # i15: timm/<name> checkpoints
        model = build_model(model_name, data.num_classes, in_channels=data.in_channels, weights=str(target))
        attribute = classifier or "classifier"
    else:
        model = _torchvision_model(model_name, data.num_classes, target)
        attribute = classifier or "fc"
    arch = {"model": model_name, "num_classes": data.num_classes, "in_channels": data.in_channels,
            "head": "linear", "options": {}, "classifier": attribute}
    return LoadedModel(model.eval(), data, attribute, arch, config, None)


def _torchvision_model(name: str, num_classes: int, weights: Path) -> nn.Module:
    import torchvision

    from nolb.io import safe_torch_load

    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except ValueError:
        raise NolbError(f"--model {name!r}: neither a nolb model nor a torchvision model name") from None
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
