"""Atomic writes: a SIGKILL at any moment leaves the destination absent, old or complete.

A child process rewrites a large self-checking file through :mod:`nolb.io` in a loop; the
test kills it at seeded random moments, many times, and checks after every kill that the
file is complete (its checksum matches).  The same harness run on a plain ``open('wb')``
write finds truncated files, so the check is able to fail.  An exception raised inside
``atomic_write`` leaves the old file in place and no temporary file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nolb.errors import NolbError
from nolb.io import atomic_write, read_json, write_bytes, write_json, write_npz, write_text

from .conftest import cli_env

CHILD = Path(__file__).with_name("_writer_child.py")
TARGETS = {"bytes": "out.bin", "naive": "out.bin", "json": "out.json", "npz": "out.npz",
           "safetensors": "out.safetensors"}


def _check_complete(path: Path, mode: str) -> str | None:
    """None if ``path`` is a complete file of ``mode``, else what is wrong."""
    if not path.exists():
        return None  # absent is allowed (nothing written yet)
    try:
        if mode in ("bytes", "naive"):
            data = path.read_bytes()
            digest, _, body = data.partition(b"\n")
            return None if hashlib.sha256(body).hexdigest().encode() == digest else f"bad checksum ({len(data)} bytes)"
        if mode == "json":
            value = json.loads(path.read_text())
            return None if value.get("end") is True and abs(sum(value["values"]) - value["sum"]) < 1e-6 else "bad JSON"
        if mode == "npz":
            with np.load(path, allow_pickle=False) as data:
                ok = hashlib.sha256(data["x"].tobytes()).hexdigest() == str(data["checksum"])
            return None if ok else "bad npz checksum"
        from nolb.io import load_safetensors

        tensors, metadata = load_safetensors(path)
        ok = hashlib.sha256(tensors["x"].numpy().tobytes()).hexdigest() == metadata["sha256"]
        return None if ok else "bad safetensors checksum"
    except Exception as exc:  # any failure to read is a truncated/corrupt file
        return f"{type(exc).__name__}: {exc}"


def _kill_loop(folder: Path, mode: str, kills: int, seed: int) -> list[str]:
    """Start the writer ``kills`` times, SIGKILL it at a random moment; return the problems seen."""
    rng = random.Random(seed)
    problems = []
    for k in range(kills):
        child = subprocess.Popen([sys.executable, str(CHILD), str(folder), mode, str(k)], env=cli_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline()
            assert line.strip() == "ready", child.stderr.read()
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            child.stdout.close()
            child.stderr.close()
        problem = _check_complete(folder / TARGETS[mode], mode)
        if problem:
            problems.append(f"kill {k}: {problem}")
    return problems


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode,kills", [("bytes", 12), ("json", 6), ("npz", 6), ("safetensors", 2)])
def test_sigkill_never_leaves_a_truncated_file(tmp_path, mode, kills):
    problems = _kill_loop(tmp_path, mode, kills, seed=sum(map(ord, mode)))
    assert not problems, problems
    assert (tmp_path / TARGETS[mode]).exists()


@pytest.mark.timeout(60)
def test_checker_catches_a_non_atomic_write(tmp_path):
    """The same kills on a plain open('wb') write do leave truncated files."""
    problems = _kill_loop(tmp_path, "naive", 8, seed=1)
    assert problems, "the harness never caught a truncated non-atomic write"


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("exc_type", (RuntimeError, KeyboardInterrupt))
@pytest.mark.parametrize("mode", ("w", "wb"))
def test_exception_inside_atomic_write_keeps_old_file(tmp_path, exc_type, mode):
    path = tmp_path / "report.json"
    write_json(path, {"old": True})
    old = path.read_bytes()
    with pytest.raises(exc_type):
        with atomic_write(path, mode) as f:
            f.write("partial " * 10000 if mode == "w" else b"partial " * 10000)
            raise exc_type("boom")
    assert path.read_bytes() == old
    assert _litter(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_failed_serialisation_keeps_old_file(tmp_path):
    """A value that cannot be written (NaN in JSON, object array in npz) leaves the old file."""
    json_path, npz_path = tmp_path / "m.json", tmp_path / "f.npz"
    write_json(json_path, {"hm": 0.5})
    write_npz(npz_path, x=np.arange(3))
    old_json, old_npz = json_path.read_bytes(), npz_path.read_bytes()
    with pytest.raises(ValueError):
        write_json(json_path, {"hm": float("nan")})
    with pytest.raises(TypeError):
        write_json(json_path, {"hm": object()})

    class Unsaveable:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("cannot convert")

    with pytest.raises(RuntimeError):
        write_npz(npz_path, x=np.arange(5), y=Unsaveable())
    assert json_path.read_bytes() == old_json and npz_path.read_bytes() == old_npz
    assert _litter(tmp_path) == []


def test_rename_failure_leaves_no_litter(tmp_path):
    """A folder at the destination is refused (never replaced) and no temp file is left."""
    from nolb.errors import NolbError

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(NolbError, match="is a folder"):
        write_text(tmp_path / "out", "hello")
    assert _litter(tmp_path) == [] and (tmp_path / "out" / "keep.txt").read_text() == "x"


def test_written_files_honour_the_umask(tmp_path):
    """Outputs get the permissions open() would give (0o666 & ~umask), not mkstemp's 0o600."""
    umask = os.umask(0o022)
    try:
        write_bytes(tmp_path / "a.bin", b"x")
        write_json(tmp_path / "b.json", {"a": 1})
    finally:
        os.umask(umask)
    for name in ("a.bin", "b.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name


def test_read_json_errors_are_one_line(tmp_path):
    path = tmp_path / "cut.json"
    write_json(path, {"values": list(range(100))})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(NolbError) as info:
        read_json(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
