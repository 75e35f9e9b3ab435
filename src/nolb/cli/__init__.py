"""The ``nolb`` command line: a thin layer over the Python API.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the
parsed ``argparse.Namespace`` and returning an exit code).  Bad input raises
:class:`nolb.errors.NolbError`; :func:`main` prints it as one line and exits with 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from nolb import __version__
from nolb.cli._parser import NolbArgumentParser
from nolb.errors import NolbError, cli_text
from nolb.progress import set_quiet

# Module names under nolb.cli, in the order `nolb --help` lists them.
SUBCOMMAND_MODULES = ("evaluate", "data", "train", "retrain", "ensemble", "run", "demo", "compare")


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
    if getattr(args, "quiet", False):
        set_quiet(True)  # every command's --quiet silences nolb.progress
    try:
        return int(args.func(args) or 0)
    except NolbError as exc:
        print(f"nolb: error: {cli_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nolb: interrupted", file=sys.stderr)
        return 130
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under torchrun, leave the process group before the interpreter exits: exiting with
    gloo's threads still running can abort the process ("terminate called without an
    active exception") after the work is done."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
