"""``package_run(run_dir)``: the run's final model as one self-describing file + a model card.

Writes ``RUN/model/model.safetensors`` (see :mod:`nolb.deploy.model_file`) and
``RUN/model/MODEL_CARD.md`` (see :mod:`nolb.deploy.card`) for the candidate
:func:`nolb.deploy.final_model.final_model_of` names (``RUN/final_model.json``, the choice
made on validation): the ensemble, a re-trained model (the stage-1 backbone with the
stage-2 head as its only classifier) or the stage-1 model.  The description's
``provenance["final"]`` names that candidate and its file, so a run directory whose
declared final model changed is packaged again (:func:`nolb.deploy.model_file.resolve_model_path`).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nolb.deploy.card import write_model_card
from nolb.deploy.description import ModelDescription, Preprocessing
from nolb.deploy.final_model import FinalModel, final_model_of
from nolb.deploy.model_file import MODEL_DIR, MODEL_FILE, save_model_file
from nolb.errors import NolbError
from nolb.io import load_safetensors, read_json


def package_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the final model of ``run_dir`` as a model file with its model card.

    Args:
        run_dir: a nolb run directory (stage 1 finished; stages 2/3 optional).
        out: the model file to write (default ``RUN/model/model.safetensors``; the card
            ``MODEL_CARD.md`` goes beside it).

    Returns:
        The model file's path.
    """
    from nolb.engine import load_trained

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise NolbError(f"{run}: not a nolb run directory (no config.yaml)")
    final = final_model_of(run)
    model, config, data = load_trained(run)
    m = config.model
    architecture = {"model": m.name, "num_classes": data.num_classes, "in_channels": data.in_channels,
                    "head": m.head, "options": dict(m.options), "classifier": "classifier"}
    new_head, heads = None, {"original": {"temperature": 1.0}}
    if final.stage == "ensemble":
        model, new_head, heads, final = _ensemble(final, model, architecture)
        architecture["head"] = m.head
    elif final.stage == "retrain":
        model = _retrained(final.path, model)
        architecture["head"] = "linear"
        heads = {"original": {"temperature": 1.0, "retrained": True, "file": str(final.path.relative_to(run))}}
    run_record = read_json(run / "run.json") if (run / "run.json").is_file() else {}
    description = ModelDescription(
        kind="ensemble" if new_head is not None else "single", stage=final.stage, architecture=architecture,
        preprocessing=Preprocessing.from_data(data), class_names=[str(n) for n in data.class_names],
        train_counts=[int(n) for n in data.class_counts.tolist()], heads=heads,
        provenance={"run_dir": str(run.resolve()), "commit": (run_record.get("git") or {}).get("commit"),
                    "dirty": (run_record.get("git") or {}).get("dirty"), "commands": _commands(run_record),
                    "data": config.data.name, "seed": run_record.get("seed"), "final": final_identity(final, run)},
    )
    path = Path(out) if out is not None else run / MODEL_DIR / MODEL_FILE
    save_model_file(path, model, description, new_head)
    write_model_card(path.parent / "MODEL_CARD.md", description, final, config, data, run)
    return path


def final_identity(final: FinalModel, run: Path) -> dict[str, Any]:
    """What the packaged file was made from: the candidate, its stage and file (relative to the run)."""
    return {"candidate": final.candidate, "stage": final.stage,
            "file": str(final.path.relative_to(run)) if final.path is not None else None}


def _commands(run_record: dict[str, Any]) -> list[str]:
    command = run_record.get("command")
    return [" ".join(command)] if command else []


def _retrained(head_path: Path, model: nn.Module) -> nn.Module:
    """The stage-1 model with its classifier replaced by the re-trained linear head."""
    tensors, _ = load_safetensors(head_path)
    if set(tensors) != {"weight", "bias"}:
        raise NolbError(f"{head_path}: not a stage-2 head (tensors {sorted(tensors)})")
    head = nn.Linear(tensors["weight"].shape[1], tensors["weight"].shape[0])
    head.load_state_dict(tensors)
    model = copy.deepcopy(model)
    model.classifier = head
    return model.eval()


def _ensemble(final: FinalModel, model: nn.Module, architecture: dict) -> tuple:
    """Open the saved ensemble into the stage-1 network (its weights replace the checkpoint's)."""
    from nolb.retrain.ensemble_io import load_ensemble

    ensemble = load_ensemble(final.path, model=model)
    new_head = ensemble.new_head
    key = final.head_key or _matching_head(final.path.parent.parent, new_head)
    heads = {"original": {"temperature": ensemble.t1}, "space": ensemble.space,
             "new": {"temperature": ensemble.t2, "in_features": new_head.in_features,
                     "out_features": new_head.out_features, "stage2_head": key}}
    return model, new_head, heads, replace(final, head_key=key)


def _matching_head(run: Path, new_head: nn.Linear) -> str | None:
    """Which stage-2 head file holds the ensemble's new head (for the card), if any."""
    from nolb.deploy.final_model import head_files

    for key, path in head_files(run):
        tensors, _ = load_safetensors(path)
        if tensors.get("weight") is not None and tensors["weight"].shape == new_head.weight.shape \
                and torch.equal(tensors["weight"], new_head.weight.detach()):
            return key
    return None
