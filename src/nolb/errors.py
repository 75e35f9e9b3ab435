"""The one exception type that the CLI turns into a one-line error message.

Every check on user input (files, configs, arguments) raises :class:`NolbError` (a
``ValueError``) with a message that names the problem and, where there is one, the file,
line or config key.  The CLI prints ``nolb: error: <message>`` and exits with status 2;
from Python the exception propagates as usual.
"""

from __future__ import annotations


class NolbError(ValueError):
    """Bad input: the message names what is wrong and where (file, line or key)."""


def one_line(message: str) -> str:
    """Collapse a message onto a single line (CLI errors are always one line)."""
    return " ".join(str(message).split())
