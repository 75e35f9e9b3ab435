"""Progress for every step a person waits on: a live bar on a terminal, plain lines elsewhere.

One small API used by every long step (stage-1 epochs, feature extraction, the selection
grid, bootstrap, ensemble search, predict)::

    from nolb.progress import Progress, track

    for batch in track(loader, desc="features (view 1/4)", unit="batch"):
        ...

    with Progress(total=len(grid), desc="selection", unit="candidate") as bar:
        for candidate in grid:
            ...
            bar.update(1, best=f"HM {best:.1%}")

On a terminal (stderr is a TTY) this is a tqdm bar.  Otherwise (a job log, a pipe) it prints
a plain line when the step starts, then at most every ``NOLB_PROGRESS_SECONDS`` (default 30)
seconds with the count, elapsed time and an ETA, and a last line when it ends
(``announce=False`` keeps only the timed lines, for a step that prints its own summary, such
as a training epoch).  Nothing is
printed when quiet (``set_quiet(True)``, the CLI's ``--quiet``, or ``NOLB_QUIET=1``), or on
any process but rank 0 under torchrun.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) every progress display of this process."""
    global _QUIET
    _QUIET = bool(quiet)


def is_quiet() -> bool:
    return _QUIET or os.environ.get("NOLB_QUIET", "") not in ("", "0")


def is_main_process() -> bool:
    """Rank 0 under torchrun (or no torchrun at all): the one process that prints results."""
    return _is_rank0()


def _is_rank0() -> bool:
    if os.environ.get("RANK", "0") != "0":
        return False
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return True


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("NOLB_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:d}:{secs:02d}"


class Progress:
    """A counter that shows itself: ``update(n, **postfix)``, ``close()``; a context manager."""

    def __init__(self, total: int | None = None, *, desc: str = "", unit: str = "it",
                 quiet: bool | None = None, stream=None, announce: bool = True) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.count = 0
        self.postfix: dict[str, object] = {}
        self._stream = stream if stream is not None else sys.stderr
        hidden = is_quiet() if quiet is None else quiet
        self.enabled = (not hidden) and _is_rank0()
        self._bar = None
        self._start = time.monotonic()
        self._last = self._start
        self._closed = False
        self._announce = announce
        if not self.enabled:
            return
        if getattr(self._stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                             file=self._stream)
        elif announce:
            self._line("started")

    def update(self, n: int = 1, **postfix: object) -> None:
        self.count += n
        if postfix:
            self.postfix.update(postfix)
        if not self.enabled:
            return
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: str(v) for k, v in self.postfix.items()}, refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= _interval():
            self._last = now
            self._line()

    def set_postfix(self, **postfix: object) -> None:
        self.update(0, **postfix)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._announce:
            self._line("done")

    def _line(self, event: str = "") -> None:
        elapsed = time.monotonic() - self._start
        count = f"{self.count}/{self.total}" if self.total else f"{self.count}"
        parts = [f"{self.desc}:" if self.desc else "progress:", f"{count} {self.unit}"]
        parts.append(f"elapsed {_clock(elapsed)}")
        if self.total and 0 < self.count < self.total and event != "started":
            parts.append(f"ETA {_clock(elapsed / self.count * (self.total - self.count))}")
        parts.extend(f"{k} {v}" for k, v in self.postfix.items())
        if event:
            parts.append(f"({event})")
        print(" ".join(parts), file=self._stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(iterable: Iterable[T], *, desc: str = "", total: int | None = None, unit: str = "it",
          quiet: bool | None = None) -> Iterator[T]:
    """Iterate over ``iterable`` while showing progress (see the module docstring)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc=desc, unit=unit, quiet=quiet) as bar:
        for item in iterable:
            yield item
            bar.update(1)
