"""Helpers shared by the reliability tests: run the real CLI and check its error output."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def cli_env() -> dict:
    """Environment for ``python -m nolb`` subprocesses: quiet, single-threaded, src on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0", NO_COLOR="1")
    return env


def run_module(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nolb", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    """Exit code 2, exactly one non-empty stderr line ``nolb: error: ...`` naming every needle."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, f"traceback on stderr:\n{err}"
    assert rc == 2, f"exit code {rc}, stderr:\n{err}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("nolb: error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not named in: {lines[0]}"
    return lines[0]


def tree_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_cli(capsys):
    """Call ``nolb.cli.main(argv)`` in-process: returns ``(exit code, stdout, stderr)``."""
    from nolb.cli import main

    def call(argv: list[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return rc, out, err

    return call
