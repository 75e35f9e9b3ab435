"""What a run needs to be traced and rerun: git commit, versions, machine, world size."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path


def git_commit(start: str | os.PathLike | None = None) -> dict:
    """The commit of the git checkout holding ``start`` (default: the nolb source), and
    whether it had uncommitted changes.  ``None`` values when not in a git checkout."""
    folder = Path(start) if start else Path(__file__).resolve().parent
    info: dict = {"commit": None, "dirty": None}
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0:
            info["commit"] = out.stdout.strip()
            status = subprocess.run(
                ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=10,
            )
            info["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def environment() -> dict:
    """Library versions and the machine, for the run directory's ``environment.json``."""
    import numpy
    import torch

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        from nolb import __version__

        env["nolb"] = __version__
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
    return env
