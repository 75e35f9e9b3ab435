"""The ``nolb`` command line: a thin layer over the Python API.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed ``argparse.Namespace`` and returning an exit code).  Bad input raises
:class:`nolb.errors.NolbError`; :func:`main` prints it as one line and exits with 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from nolb import __version__
from nolb.cli._parser import NolbArgumentParser
from nolb.errors import NolbError, cli_text, one_line
from nolb.progress import set_quiet

# Module names under nolb.cli, in the order `nolb --help` lists them.
SUBCOMMAND_MODULES = ("evaluate", "data", "train", "retrain", "ensemble", "run", "demo", "recipes", "predict",
                      "export", "compare")


def build_parser() -> argparse.ArgumentParser:
    parser = NolbArgumentParser(
        prog="nolb",
        description="No One Left Behind: long-tailed recognition that lifts the worst classes.",
    )
    parser.add_argument("--version", action="version", version=f"nolb {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"nolb.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before the subcommands import torch (and OpenMP reads it): waiting threads sleep instead
    # of spinning on a core another thread or job needs (docs/PERFORMANCE.md "CPU threads").
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from nolb.engine.run_dir import command_locks

    if getattr(args, "quiet", False):
        set_quiet(True)  # every command's --quiet silences nolb.progress
    try:
        with command_locks():  # a run directory stays locked until the command ends
            return int(args.func(args) or 0)
    except NolbError as exc:
        print(f"nolb: error: {cli_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nolb: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment, not the input: read-only, disk full, permissions
        print(f"nolb: error: {environment_fault(exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        print("nolb: error: out of memory (try a smaller batch size or fewer classes)", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug, not the user's fault: still one line (NOLB_DEBUG=1 shows the traceback)
        if os.environ.get("NOLB_DEBUG"):
            raise
        print(f"nolb: error: internal error {type(exc).__name__}: {one_line(str(exc))[:300]} "
              "(please report it; NOLB_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    finally:
        _leave_process_group()


_ERRNO_WORDS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a path component is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many symbolic links",
}


def environment_fault(exc: OSError) -> str:
    """One plain line for a file-system or OS fault (no traceback)."""
    words = _ERRNO_WORDS.get(exc.errno or -1) or one_line(exc.strerror or str(exc) or type(exc).__name__)
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{words}"


def _leave_process_group() -> None:
    """Under torchrun, leave the process group before the interpreter exits: exiting with
    gloo's threads still running can abort the process ("terminate called without an
    active exception") after the work is done."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
