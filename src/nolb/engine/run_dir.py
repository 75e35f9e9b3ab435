"""The run directory: the one object through which a training run writes anything.

Layout::

    RUN_DIR/
      config.yaml                 the resolved config
      run.json                    seed, world size, git commit, environment, command
      log.jsonl                   one JSON record per epoch
      metrics.json                validation (best epoch) and test summaries
      per_class.csv               per-class test recall
      per_class_recall.png        its plot
      checkpoints/last.safetensors, last.optim.safetensors, last.json
      checkpoints/best.safetensors, best.json

Every file is written atomically through :mod:`nolb.io`.  A checkpoint is saved tensors
first, then the JSON state that names them with their SHA-256, so a kill between the two
leaves the previous state (whose check then fails loudly) and never a state that points at
missing weights.  Only the main process writes; the others get a read-only handle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from nolb.errors import NolbError
from nolb.io import load_safetensors, read_json, save_safetensors, write_json, write_text

CHECKPOINT_KINDS = ("last", "best")
_PENDING = ".pending"  # suffix of checkpoint tensors not yet committed by their JSON
_RUN_MARKERS = ("config.yaml", "run.json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class RunDir:
    """A run directory, created (or reopened for resume) on construction.

    Args:
        path: The folder.
        resume: Reopen an existing run (it must hold ``checkpoints/last.json``).
        overwrite: Delete an existing run directory's contents first (only a folder that
            looks like a nolb run is deleted).
        writer: False on non-main DDP ranks: nothing is created or written.

    Raises:
        NolbError: the folder exists and neither ``resume`` nor ``overwrite`` is set, or
            ``resume`` names a folder without a checkpoint.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        if resume and overwrite:
            raise NolbError("resume=True and overwrite=True exclude each other",
                            cli="--resume and --overwrite exclude each other")
        if resume:
            if not (self.path / "checkpoints" / "last.json").is_file() and not (self.path / "config.yaml").is_file():
                raise NolbError(f"{self.path}: nothing to resume (no checkpoints/last.json)")
            if writer:  # temporary files of writes that a kill interrupted
                for stale in [*self.path.glob(".*.tmp"), *self.checkpoint_dir.glob(".*.tmp")]:
                    stale.unlink(missing_ok=True)
            return
        exists = self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir()))
        if exists and writer:
            if not overwrite:
                raise NolbError(f"{self.path}: run directory exists; pass resume=True to continue it or overwrite=True "
                                f"to replace it", cli=f"{self.path}: run directory exists; pass --resume to continue "
                                                      f"it or --overwrite to replace it")
            if not self.path.is_dir() or not any((self.path / m).exists() for m in _RUN_MARKERS):
                raise NolbError(f"{self.path}: refusing to overwrite: it is not a nolb run directory")
            shutil.rmtree(self.path)
        # The folder is created by the first write (nolb.io makes parents), so a run refused
        # while it starts up leaves no half-made run directory behind.

    @property
    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / "last.json").is_file()

    # -------------------------------------------------------------- records
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def write_config(self, config: Any) -> None:
        """Write ``config.yaml`` (the resolved config)."""
        if self.writer:
            write_text(self.path / "config.yaml", config.to_yaml())

    def write_run_info(self, info: dict) -> None:
        if self.writer:
            write_json(self.path / "run.json", info)

    def record_resume(self, config: Any, *, from_epoch: int, command: list[str]) -> None:
        """Note a resumption in ``run.json``; rewrite ``config.yaml`` if overrides changed it."""
        if not self.writer:
            return
        changed = self.read_config_dict() != config.to_dict()
        if changed:
            self.write_config(config)
        info = read_json(self.path / "run.json") if (self.path / "run.json").is_file() else {}
        info.setdefault("resumed", []).append(
            {"from_epoch": from_epoch, "command": command, "config_changed": changed, "time_unix": time.time()})
        self.write_run_info(info)

    def read_log(self) -> list[dict]:
        log = self.path / "log.jsonl"
        if not log.is_file():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]

    def append_log(self, record: dict) -> None:
        """Add one record to ``log.jsonl`` (the file is rewritten atomically)."""
        if self.writer:
            self.write_log(self.read_log() + [record])

    def write_log(self, records: list[dict]) -> None:
        if self.writer:
            lines = (json.dumps(r, separators=(",", ":"), allow_nan=False, default=float) + "\n" for r in records)
            write_text(self.path / "log.jsonl", "".join(lines))

    def write_metrics(self, metrics: dict) -> None:
        if self.writer:
            write_json(self.path / "metrics.json", metrics)

    def write_per_class(self, report: Any) -> None:
        """Write the test report's per-class table as ``per_class.csv``."""
        if self.writer:
            report.write_csv(self.path / "per_class.csv")

    def write_plot(self, report: Any, title: str | None = None) -> None:
        """Write ``per_class_recall.png`` (classes sorted head to tail) for ``report``."""
        if self.writer:
            from nolb.metrics import plot_per_class_recall

            plot_per_class_recall({"test": report}, self.path / "per_class_recall.png", title=title)

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self, kind: str, model_state: dict[str, torch.Tensor], state: dict,
                        optimizer_tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Save ``kind`` ("last" or "best"): tensors first, then the JSON state naming them.

        Args:
            kind: "last" or "best".
            model_state: The model's state dict (unwrapped).
            state: JSON-safe training state (epoch, optimizer hyper-parameters, RNG, ...).
            optimizer_tensors: Flat optimizer tensors (momentum buffers), optional.
        """
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint kind must be one of {CHECKPOINT_KINDS}")
        if not self.writer:
            return
        files = {"weights": f"{kind}.safetensors"}
        # Tensors go to *.pending files first; the JSON naming them (with their SHA-256) is the
        # commit point; then they replace the final names.  A kill before the JSON keeps the
        # previous checkpoint whole; a kill after it is completed by load_checkpoint.
        save_safetensors(self.checkpoint_dir / f"{files['weights']}{_PENDING}", model_state,
                         metadata={"epoch": str(state.get("epoch"))})
        if optimizer_tensors is not None:
            files["optimizer"] = f"{kind}.optim.safetensors"
            save_safetensors(self.checkpoint_dir / f"{files['optimizer']}{_PENDING}", optimizer_tensors)
        record = dict(state)
        record["files"] = {role: {"name": name, "sha256": _sha256(self.checkpoint_dir / f"{name}{_PENDING}")}
                           for role, name in files.items()}
        write_json(self.checkpoint_dir / f"{kind}.json", record)
        for name in files.values():
            os.replace(self.checkpoint_dir / f"{name}{_PENDING}", self.checkpoint_dir / name)

    def load_checkpoint(self, kind: str = "last") -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Read a checkpoint: ``(state, model_state, optimizer_tensors)``, hashes verified."""
        state = read_json(self.checkpoint_dir / f"{kind}.json")
        tensors = {}
        for role, entry in state.get("files", {}).items():
            path = self.checkpoint_dir / entry["name"]
            pending = self.checkpoint_dir / f"{entry['name']}{_PENDING}"
            if not (path.is_file() and _sha256(path) == entry["sha256"]) and pending.is_file() \
                    and _sha256(pending) == entry["sha256"]:
                if not self.writer:  # killed after the JSON, before the rename: use the new file
                    tensors[role], _ = load_safetensors(pending)
                    continue
                os.replace(pending, path)  # finish the interrupted save
            if not path.is_file():
                raise NolbError(f"{path}: missing (named by checkpoints/{kind}.json)")
            if _sha256(path) != entry["sha256"]:
                raise NolbError(f"{path}: does not match checkpoints/{kind}.json (interrupted while saving?)")
            tensors[role], _ = load_safetensors(path)
        return state, tensors.get("weights", {}), tensors.get("optimizer", {})

    def read_config_text(self) -> str:
        path = self.path / "config.yaml"
        if not path.is_file():
            raise NolbError(f"{self.path}: not a run directory (no config.yaml)")
        return path.read_text(encoding="utf-8")

    def read_config_dict(self) -> dict:
        return yaml.safe_load(self.read_config_text()) or {}
