"""The one exception type that the CLI turns into a one-line error message.

Every check on user input (files, configs, arguments) raises :class:`NolbError` (a
``ValueError``) with a message that names the problem and, where there is one, the file,
line or config key.  The CLI prints ``nolb: error: <message>`` and exits with status 2;
from Python the exception propagates as usual.

Errors speak the caller's language: where a message names a setting, its text uses the
Python keyword (``exclude_empty=True``) and, when the spelling differs on the command line,
the error also carries that spelling (``NolbError(msg, cli="... --exclude-empty ...")``),
which is what the CLI prints (:func:`cli_text`).  Every lookup of a name (dataset, recipe,
model, loss, method) adds the close match (:func:`did_you_mean`).
"""

from __future__ import annotations

import difflib
from typing import Iterable


_WORKER_MARKER = "NolbError: "


class NolbError(ValueError):
    """Bad input: the message names what is wrong and where (file, line or key).

    A NolbError raised inside a torch DataLoader worker (a corrupt image, say) is re-raised
    in the main process as ``NolbError("Caught NolbError in DataLoader worker process 0.
    Original Traceback ...")``; the original one-line message is recovered from that text
    so that the CLI still prints one line and no traceback.
    """

    def __init__(self, *args: object, cli: str | None = None) -> None:
        self.cli = cli  # the same message in command-line spellings (flags, key=value), if different
        if len(args) == 1 and isinstance(args[0], str):
            text = args[0]
            if text.startswith("Caught ") and "DataLoader worker" in text and _WORKER_MARKER in text:
                args = (text.rsplit(_WORKER_MARKER, 1)[1].strip() + " (in a data loader worker)",)
        super().__init__(*args)

    def prefixed(self, prefix: str) -> "NolbError":
        """The same error with ``prefix`` (a file name, say) before both of its spellings."""
        return NolbError(f"{prefix}{self}", cli=None if self.cli is None else f"{prefix}{self.cli}")


def one_line(message: str) -> str:
    """Collapse a message onto a single line (CLI errors are always one line)."""
    return " ".join(str(message).split())


def cli_text(exc: BaseException) -> str:
    """What the CLI prints after ``nolb: error:``: the CLI spelling of ``exc`` on one line,
    without a ``nolb: error:`` / ``nolb:`` prefix of its own (the CLI adds exactly one)."""
    text = one_line(getattr(exc, "cli", None) or str(exc))
    while True:
        for prefix in ("nolb: error:", "nolb:", "error:"):
            if text.startswith(prefix):
                text = text[len(prefix):].lstrip()
                break
        else:
            return text


def did_you_mean(value: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to ``value``, or ``""`` if none is close.

    ``-`` and ``_`` and letter case are not told apart first (``cifar10-lt`` -> ``cifar10_lt``),
    then :func:`difflib.get_close_matches` decides."""
    choices = [str(c) for c in choices]
    wanted = str(value)
    normal = {c.lower().replace("-", "_"): c for c in choices}
    exact = normal.get(wanted.lower().replace("-", "_"))
    close = [exact] if exact is not None else difflib.get_close_matches(wanted, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
