"""``python tests/retrain/logged_nolb.py ARGS``: ``nolb ARGS`` with every atomic write logged.

Each ``nolb.io.atomic_write`` appends ``<rank> <path>`` to the file named by the environment
variable ``NOLB_WRITE_LOG`` (one line per completed write), so a test can check that under
torchrun each output file is written exactly once and by which rank.
"""

from __future__ import annotations

import contextlib
import os
import sys

import nolb.io

_original = nolb.io.atomic_write


@contextlib.contextmanager
def _logged(path, mode="wb"):
    with _original(path, mode) as handle:
        yield handle
    with open(os.environ["NOLB_WRITE_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{os.environ.get('RANK', '0')} {os.path.abspath(path)}\n")


nolb.io.atomic_write = _logged

if __name__ == "__main__":
    from nolb.cli import main

    sys.exit(main(sys.argv[1:]))
