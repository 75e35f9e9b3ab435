"""Saving and loading the ensemble as one model file (safetensors + a JSON description).

``<name>.safetensors`` holds every tensor of the :class:`~nolb.retrain.ensemble.Ensemble`
(backbone, original head, new head); ``<name>.json`` beside it holds the temperatures,
the averaging space, how to rebuild the architecture (``nolb.models.build_model``
arguments and the classifier attribute) and the SHA-256 of the tensor file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from nolb.errors import NolbError
from nolb.io import load_safetensors, read_json, save_safetensors, write_json
from nolb.retrain.backbone import split_classifier
from nolb.retrain.ensemble import Ensemble

FORMAT = "nolb-ensemble-1"


def save_ensemble(path: str | Path, ensemble: Ensemble, architecture: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` description.

    Args:
        path: the tensor file; the description goes to the same name with ``.json``.
        ensemble: the model to save.
        architecture: ``{"model": name, "num_classes": C, "in_channels": ..., "head": ...,
            "options": {...}, "classifier": attribute}`` (what :func:`load_ensemble` rebuilds).
        overwrite: replace existing files.

    Returns:
        The path of the JSON description.
    """
    path = Path(path)
    description = path.with_suffix(".json")
    if not overwrite and (path.exists() or description.exists()):
        raise NolbError(f"{path}: exists; pass overwrite=True to replace it",
                        cli=f"{path}: exists; pass --overwrite to replace it")
    save_safetensors(path, ensemble.state_dict(), metadata={"format": FORMAT})
    write_json(description, {
        "format": FORMAT, "weights": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "t1": ensemble.t1, "t2": ensemble.t2, "space": ensemble.space,
        "new_head": {"in_features": ensemble.new_head.in_features, "out_features": ensemble.new_head.out_features},
        "architecture": architecture,
    })
    return description


def load_ensemble(path: str | Path, model: nn.Module | None = None) -> Ensemble:
    """Rebuild a saved ensemble.

    Args:
        path: the ``.safetensors`` file or its ``.json`` description.
        model: a model of the saved architecture to receive the weights; None builds it
            with ``nolb.models.build_model`` from the description.

    Returns:
        The ensemble in eval mode.
    """
    path = Path(path)
    description = read_json(path.with_suffix(".json"))
    if description.get("format") != FORMAT:
        raise NolbError(f"{path.with_suffix('.json')}: not a nolb ensemble description (format {description.get('format')!r})")
    weights_path = path.with_suffix(".safetensors")
    if hashlib.sha256(weights_path.read_bytes()).hexdigest() != description["sha256"]:
        raise NolbError(f"{weights_path}: does not match its .json description (modified or truncated)")
    arch = description["architecture"]
    if model is None:
        from nolb.models import build_model

        model = build_model(arch["model"], arch["num_classes"], in_channels=arch.get("in_channels", 3),
                            head=arch.get("head", "linear"), **arch.get("options", {}))
    backbone, original_head = split_classifier(model, arch.get("classifier", "classifier"))
    shape = description["new_head"]
    ensemble = Ensemble(backbone, original_head, nn.Linear(shape["in_features"], shape["out_features"]),
                        description["t1"], description["t2"], description["space"])
    tensors, _ = load_safetensors(weights_path)
    missing, unexpected = ensemble.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise NolbError(f"{weights_path}: does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return ensemble.eval()
