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

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import torch

from nolb.errors import NolbError
from nolb.io import load_safetensors, read_json, save_safetensors, write_json, write_text

CHECKPOINT_KINDS = ("last", "best")
_PENDING = ".pending"  # suffix of checkpoint tensors not yet committed by their JSON
MARKER = ".nolb-run"  # written first into every run directory nolb creates; also its lock file
# Config keys a resume may change without changing what the run computes.
RESUME_FREE_KEYS = ("train.epochs", "train.progress", "train.tensorboard", "train.plot", "train.device",
                    "train.eval_batch_size", "data.num_workers")

_LOCKS: dict[str, int] = {}  # resolved run directory -> fd of its locked marker
_KEEP_LOCKS = [False]  # True while a CLI command runs: locks are released when it ends


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_owned(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder nolb created (it holds the regular file :data:`MARKER`)."""
    marker = Path(path) / MARKER
    return Path(path).is_dir() and marker.is_file() and not marker.is_symlink()


def lock_run_dir(path: str | os.PathLike) -> None:
    """Take the exclusive lock of the run directory ``path`` for this process (re-entrant).

    The lock is an ``flock`` on its marker file: the OS drops it when the process ends, so
    a killed run never leaves a stale lock.  A run directory made by an older nolb (no
    marker, but ``config.yaml``) is adopted: the marker is added.

    Raises:
        NolbError: another process holds the lock.
    """
    folder = Path(path).resolve()
    if str(folder) in _LOCKS:
        return
    fd = os.open(folder / MARKER, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise NolbError(f"{path}: in use by another nolb process (its lock {MARKER} is held); "
                        "wait for it to finish or choose another run directory") from None
    if os.fstat(fd).st_size == 0:
        os.write(fd, f"nolb run directory {uuid.uuid4().hex}\n".encode())
        os.fsync(fd)
    _LOCKS[str(folder)] = fd


def release_run_dir(path: str | os.PathLike) -> None:
    """Drop this process's lock on ``path`` (kept until the command ends inside :func:`command_locks`)."""
    if _KEEP_LOCKS[0]:
        return
    fd = _LOCKS.pop(str(Path(path).resolve()), None)
    if fd is not None:
        os.close(fd)


@contextlib.contextmanager
def command_locks():
    """Hold every run directory lock taken inside this block until the block ends (one CLI command)."""
    _KEEP_LOCKS[0] = True
    try:
        yield
    finally:
        _KEEP_LOCKS[0] = False
        while _LOCKS:
            os.close(_LOCKS.popitem()[1])


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def config_differences(old: dict, new: dict, allow: Sequence[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two config dicts, apart from :data:`RESUME_FREE_KEYS`
    and keys matching an ``allow`` pattern (``fnmatch``: ``retrain.*``)."""
    a, b = _flatten(old), _flatten(new)
    free = (*RESUME_FREE_KEYS, *allow)
    return [key for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key) and not any(fnmatch.fnmatchcase(key, pattern) for pattern in free)]


def check_resume_config(run_dir: str | os.PathLike, config: Any, allow: Sequence[str] = ()) -> None:
    """Refuse a resume of ``run_dir`` whose ``config`` changes anything that changes results.

    Raises:
        NolbError: listing the keys that differ (old -> new) and how to proceed.
    """
    run = RunDir(run_dir, resume=True, writer=False)
    old, new = run.read_config_dict(), config.to_dict()
    keys = config_differences(old, new, allow)
    if keys:
        a, b = _flatten(old), _flatten(new)
        shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in keys[:6]) + (" ..." if len(keys) > 6 else "")
        raise NolbError(f"{run_dir}: a resume continues the same run, but this one changes {shown}; "
                        f"start a new run (--out), or pass --allow-changed KEY (e.g. 'retrain.*') to start those settings anew")


def _half_made(path: Path) -> bool:
    """A folder nolb created but was killed in before writing ``config.yaml`` (marker and temp files only)."""
    return is_owned(path) and all(p.name == MARKER or p.name.endswith(".tmp") for p in path.iterdir())


class RunDir:
    """A run directory, claimed (or reopened for resume) on construction.

    A new run directory gets :data:`MARKER` first; the writer holds an OS lock on it for as
    long as the run lasts, so a second writer is refused at once.  Only a folder holding the
    marker is ever emptied (``overwrite``), and only once the new run starts writing.

    Args:
        path: The folder.
        resume: Reopen an existing run (it must hold ``checkpoints/last.json``).
        overwrite: Replace an existing run directory's contents (only one nolb made).
        writer: False on non-main DDP ranks: nothing is created, locked or written.

    Raises:
        NolbError: the folder exists and neither ``resume`` nor ``overwrite`` is set,
            ``resume`` names a folder without a checkpoint, the folder is not nolb's, or
            another process holds its lock.
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False, writer: bool = True) -> None:
        self.path = Path(path)
        self.writer = writer
        self.created = False  # this object made the folder (removed again by discard())
        self._clear_on_start = False
        self._empty_claimed = False  # an empty folder the user made: only the marker was added
        if resume and overwrite:
            raise NolbError("resume=True and overwrite=True exclude each other",
                            cli="--resume and --overwrite exclude each other")
        if resume:
            if not (self.path / "config.yaml").is_file():
                if self.path.is_dir() and _half_made(self.path):
                    raise NolbError(f"{self.path}: the run was stopped before it wrote its config, so there is "
                                    "nothing to resume; run the same command without --resume (the folder is reused)")
                raise NolbError(f"{self.path}: nothing to resume (no config.yaml or checkpoints/last.json)")
            if writer:
                lock_run_dir(self.path)
                for stale in self.path.rglob(".*.tmp"):  # temp files of writes that a kill interrupted
                    if stale.is_file():
                        stale.unlink(missing_ok=True)
            return
        if not writer:
            return
        if (self.path.exists() or self.path.is_symlink()) and not self.path.is_dir():
            raise NolbError(f"{self.path}: exists and is not a folder; choose another run directory")
        if not self.path.exists():
            try:
                self.path.mkdir(parents=True)
                self.created = True
            except FileExistsError:  # another process made it this instant
                pass
        if self.created or not any(self.path.iterdir()):
            self._empty_claimed = not self.created
            lock_run_dir(self.path)
            return
        if _half_made(self.path):  # a kill during the first write: reuse the folder
            lock_run_dir(self.path)
            self._clear_on_start = True
            return
        if not is_owned(self.path):
            older = (self.path / "config.yaml").is_file()
            text = (f"{self.path}: exists and is not a nolb run directory (no {MARKER} marker); nolb never "
                    f"{'deletes' if overwrite else 'mixes files into'} a folder it did not make: choose "
                    f"another run directory")
            raise NolbError(text + (" (if an older nolb made it, pass resume=True to continue it)" if older else ""),
                            cli=text + (" (if an older nolb made it, pass --resume to continue it)" if older else ""))
        lock_run_dir(self.path)
        if not overwrite:
            self.release()
            raise NolbError(f"{self.path}: run directory exists; pass resume=True to continue it or overwrite=True to "
                            "replace it", cli=f"{self.path}: run directory exists; pass --resume to continue it or "
                            "--overwrite to replace it")
        self._clear_on_start = True  # emptied when the new run writes its config, not before

    def release(self) -> None:
        """Drop the lock (kept until the end of a CLI command, see :func:`command_locks`)."""
        if self.writer:
            release_run_dir(self.path)

    def discard(self) -> None:
        """A start refused before anything was written: remove the folder if this object made it."""
        if not self.writer or (self.path / "config.yaml").exists():
            return
        if self.created or self._empty_claimed:
            fd = _LOCKS.pop(str(self.path.resolve()), None)
            if fd is not None:
                os.close(fd)
            if self.created:
                shutil.rmtree(self.path, ignore_errors=True)
            elif [p.name for p in self.path.iterdir()] == [MARKER]:
                (self.path / MARKER).unlink()

    def _start(self) -> None:
        """Empty an overwritten (or half-made) run directory, keeping the locked marker."""
        if not self._clear_on_start:
            return
        for entry in self.path.iterdir():
            if entry.name == MARKER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        self._clear_on_start = False

    @property
    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / "last.json").is_file()

    # -------------------------------------------------------------- records
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def write_config(self, config: Any) -> None:
        """Write ``config.yaml`` (the resolved config): the start of a new run's outputs."""
        if self.writer:
            self._start()
            write_text(self.path / "config.yaml", config.to_yaml())

    def write_run_info(self, info: dict) -> None:
        if self.writer:
            self._start()
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
        records = []
        for number, line in enumerate(log.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                raise NolbError(f"{log}:{number}: not a JSON record (the log was edited or damaged); "
                                "restore it or delete that line")
            records.append(record)
        return records

    def append_log(self, record: dict) -> None:
        """Add one record to ``log.jsonl`` (the file is rewritten atomically)."""
        if self.writer:
            self.write_log(self.read_log() + [record])

    def write_log(self, records: list[dict]) -> None:
        if self.writer:
            self._start()
            lines = (json.dumps(r, separators=(",", ":"), allow_nan=False, default=float) + "\n" for r in records)
            write_text(self.path / "log.jsonl", "".join(lines))

    def write_metrics(self, metrics: dict) -> None:
        if self.writer:
            self._start()
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
        self._start()
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
        from nolb.yaml_io import load_yaml_text

        data = load_yaml_text(self.read_config_text(), str(self.path / "config.yaml"))[0] or {}
        if not isinstance(data, dict):
            raise NolbError(f"{self.path / 'config.yaml'}: not a config mapping")
        return data
