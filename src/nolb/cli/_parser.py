"""The argument parser every ``nolb`` command uses.

Two differences from :class:`argparse.ArgumentParser`:

* a usage error is one line (``nolb: error: nolb train: ...``) with exit status 2, like every
  other bad input, instead of the usage block followed by the message;
* a subcommand's positionals and options may be intermixed, so ``key=value`` overrides can
  follow options (``nolb train digits_lt --out RUN train.epochs=3``).
"""

from __future__ import annotations

import argparse
import sys

from nolb.errors import one_line


class NolbArgumentParser(argparse.ArgumentParser):
    _parsing_intermixed = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._parsing_intermixed or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._parsing_intermixed = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing_intermixed = False

    def error(self, message: str):  # type: ignore[override]
        where = "" if self.prog == "nolb" else f"{self.prog}: "  # one "nolb:" prefix, never two
        print(f"nolb: error: {where}{one_line(message)} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)
