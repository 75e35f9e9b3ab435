"""The one exception type that the CLI turns into a one-line error message.

Every check on user input (files, configs, arguments) raises :class:`NolbError` (a
``ValueError``) with a message that names the problem and, where there is one, the file,
line or config key.  The CLI prints ``nolb: error: <message>`` and exits with status 2;
from Python the exception propagates as usual.
"""

from __future__ import annotations


_WORKER_MARKER = "NolbError: "


class NolbError(ValueError):
    """Bad input: the message names what is wrong and where (file, line or key).

    A NolbError raised inside a torch DataLoader worker (a corrupt image, say) is re-raised
    in the main process as ``NolbError("Caught NolbError in DataLoader worker process 0.
    Original Traceback ...")``; the original one-line message is recovered from that text
    so that the CLI still prints one line and no traceback.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            text = args[0]
            if text.startswith("Caught ") and "DataLoader worker" in text and _WORKER_MARKER in text:
                args = (text.rsplit(_WORKER_MARKER, 1)[1].strip() + " (in a data loader worker)",)
        super().__init__(*args)


def one_line(message: str) -> str:
    """Collapse a message onto a single line (CLI errors are always one line)."""
    return " ".join(str(message).split())
