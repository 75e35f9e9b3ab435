"""The self-describing model file: one ``.safetensors`` file with its description inside.

Layout (decided for issue 15): the tensors of the base model under ``model.`` (backbone and
original classifier, exactly ``build_model(...).state_dict()``) and, for an ensemble, the
re-trained head under ``new_head.``; the safetensors header metadata holds
``{"format": "nolb-model-1", "description": <JSON of ModelDescription>}``.  One file to copy,
nothing executed on load (safetensors), and a SHA-256 over the description and every
tensor (names, dtypes, shapes, bytes) that :func:`load_model` verifies, so a modified or
mixed-up file is refused by name.  ``MODEL_CARD.md`` (see :mod:`nolb.deploy.card`) sits
beside it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nolb.deploy.classifier import DeployedClassifier
from nolb.deploy.description import FORMAT, ModelDescription
from nolb.errors import NolbError
from nolb.io import load_safetensors, save_safetensors

MODEL_FILE = "model.safetensors"  # the name inside a run's model folder
MODEL_DIR = "model"  # RUN/model/model.safetensors + MODEL_CARD.md


def checksum(description: ModelDescription, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the description (without its checksum) and every tensor in name order."""
    digest = hashlib.sha256(json.dumps(description.to_dict(with_checksum=False), sort_keys=True).encode())
    for name in sorted(tensors):
        value = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def model_tensors(model: nn.Module, new_head: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The tensors a model file stores: ``model.*`` and (ensemble) ``new_head.*``."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if new_head is not None:
        tensors.update({f"new_head.{k}": v for k, v in new_head.state_dict().items()})
    return tensors


def save_model_file(path: str | Path, model: nn.Module, description: ModelDescription,
                    new_head: nn.Module | None = None) -> Path:
    """Write a model file (atomically); fills ``description.checksum``.

    Args:
        path: the ``.safetensors`` file to write.
        model: the base model (a ``nolb.models.build_model`` network of ``description.architecture``).
        description: what the file says about itself.
        new_head: the re-trained ``nn.Linear`` head of an ensemble.

    Returns:
        ``path``.
    """
    if (new_head is not None) != (description.kind == "ensemble"):
        raise NolbError(f"{path}: an ensemble description needs a new head, a single one none")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_tensors(model, new_head).items()}
    description.checksum = checksum(description, tensors)
    save_safetensors(path, tensors, metadata={"format": FORMAT, "description": json.dumps(description.to_dict())})
    return Path(path)


def read_description(path: str | Path) -> tuple[ModelDescription, dict[str, torch.Tensor]]:
    """The description and tensors of a model file, after checking the checksum."""
    path = Path(path)
    tensors, metadata = load_safetensors(path)
    if metadata.get("format") != FORMAT or "description" not in metadata:
        raise NolbError(f"{path}: not a nolb model file (no {FORMAT!r} description in its metadata)")
    try:
        raw = json.loads(metadata["description"])
    except json.JSONDecodeError as exc:
        raise NolbError(f"{path}: corrupt model description ({exc})") from None
    description = ModelDescription.from_dict(raw, source=str(path))
    if checksum(description, tensors) != description.checksum:
        raise NolbError(f"{path}: checksum mismatch: the weights or the description were modified after saving")
    return description, tensors


def build_classifier(description: ModelDescription, tensors: dict[str, torch.Tensor] | None = None,
                     source: str = "model file") -> DeployedClassifier:
    """Rebuild the network a description names and (optionally) load ``tensors`` into it."""
    from nolb.models import build_model
    from nolb.retrain.backbone import split_classifier

    arch = description.architecture
    model = build_model(arch["model"], int(arch["num_classes"]), in_channels=int(arch.get("in_channels", 3)),
                        head=arch.get("head", "linear"), **arch.get("options", {}))
    new_head = None
    if description.kind == "ensemble":
        shape = description.heads["new"]
        new_head = nn.Linear(int(shape["in_features"]), int(shape["out_features"]))
    if tensors is not None:
        _load(model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, source)
        if new_head is not None:
            _load(new_head, {k[len("new_head."):]: v for k, v in tensors.items() if k.startswith("new_head.")}, source)
    backbone, original_head = split_classifier(model, arch.get("classifier", "classifier"))
    heads = description.heads
    classifier = DeployedClassifier(backbone, original_head, new_head,
                                    t1=heads.get("original", {}).get("temperature", 1.0),
                                    t2=heads.get("new", {}).get("temperature", 1.0), space=heads.get("space", "prob"))
    return classifier.eval()


def _load(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise NolbError(f"{source}: tensors do not fit the described architecture "
                        f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def resolve_model_path(path: str | Path) -> Path:
    """A model file, or a run directory meaning its final model (packaged on first use)."""
    path = Path(path)
    if path.is_dir():
        packaged = path / MODEL_DIR / MODEL_FILE
        if (path / "config.yaml").is_file():
            if packaged.is_file() and _is_current(path, packaged):
                return packaged
            from nolb.deploy.package import package_run

            return package_run(path)
        if packaged.is_file():
            return packaged
        raise NolbError(f"{path}: neither a nolb model file nor a run directory (no config.yaml, no {MODEL_DIR}/{MODEL_FILE})")
    if not path.is_file():
        raise NolbError(f"{path}: no such model file or run directory")
    return path


def _is_current(run: Path, packaged: Path) -> bool:
    """True when ``packaged`` holds the run's declared final model (same candidate and file)
    and is newer than every file it was made from (checkpoint, head or ensemble, final_model.json)."""
    from safetensors import safe_open

    from nolb.deploy.final_model import final_model_of
    from nolb.deploy.package import final_identity

    final = final_model_of(run)
    sources = [run / "checkpoints" / "best.safetensors", run / "checkpoints" / "last.safetensors",
               run / "final_model.json"] + ([final.path] if final.path is not None else [])
    newest = max((p.stat().st_mtime for p in sources if p.is_file()), default=0.0)
    try:
        with safe_open(str(packaged), "pt") as handle:
            provenance = json.loads((handle.metadata() or {}).get("description", "{}")).get("provenance", {})
    except Exception:  # unreadable: package again
        return False
    return provenance.get("final") == final_identity(final, run) and packaged.stat().st_mtime >= newest


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[DeployedClassifier, ModelDescription]:
    """Load a nolb model file (or a run directory's final model), ready to predict.

    Args:
        path: a model file written by :func:`save_model_file` / ``nolb.deploy.package_run``,
            or a run directory (its ``model/model.safetensors``, packaged again first when
            missing, older than the files of the run's final model, or of another candidate).
        device: where the module goes.

    Returns:
        ``(module, description)``: the :class:`DeployedClassifier` in eval mode (images
        prepared as ``description.preprocessing`` says -> (N, C) probabilities) and the
        :class:`ModelDescription`.
    """
    path = resolve_model_path(path)
    description, tensors = read_description(path)
    module = build_classifier(description, tensors, source=str(path))
    return module.to(device).eval(), description


def describe(path: str | Path) -> dict[str, Any]:
    """The description of a model file as a plain dict (checksum verified)."""
    return read_description(resolve_model_path(path))[0].to_dict()
