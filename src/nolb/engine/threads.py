"""How many CPU threads a run uses: ``train.threads`` (``auto`` or a number), overridable by
the ``NOLB_THREADS`` and ``OMP_NUM_THREADS`` environment variables.

``auto`` gives each process its share of the cores that are free when the run starts: the
cores (``os.sched_getaffinity``) minus the 1-minute load average of other work, divided by
the processes on this machine, at least 1.  On a machine where another job keeps a core
busy, a second intra-op thread waits on that core and slows every step down (measured:
``benchmarks/threads.py``, docs/PERFORMANCE.md "CPU threads"); on an idle machine every core
is used.  The chosen count is printed in the run header and recorded in ``run.json``.
"""

from __future__ import annotations

import os

from nolb.errors import NolbError

ENV_VARIABLES = ("NOLB_THREADS", "OMP_NUM_THREADS")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def auto_threads(processes: int = 1, cores: int | None = None, load: float | None = None) -> int:
    """The free cores per process (at least 1): ``(cores - load) / processes``, rounded."""
    cores = available_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:
            load = 0.0
    free = max(1.0, cores - max(0.0, load))
    return max(1, min(cores, int(free / max(1, processes) + 0.5)))


def resolve_threads(setting: object, processes: int = 1) -> tuple[int, str]:
    """``(threads, where the number came from)`` for ``train.threads`` and the environment."""
    for name in ENV_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise NolbError(f"environment variable {name}={value!r}: expected a positive integer")
            return int(value), name
    text = str(setting).strip().lower()
    if text == "auto":
        return auto_threads(processes), "train.threads=auto"
    if not text.isdigit() or int(text) < 1:
        raise NolbError(f"config key 'train.threads': expected 'auto' or a positive integer, got {setting!r}")
    return int(text), "train.threads"


def apply_threads(setting: object, processes: int = 1) -> tuple[int, str]:
    """Resolve the thread count and set it for torch's intra-op pool; returns what was set."""
    import torch

    threads, source = resolve_threads(setting, processes)
    torch.set_num_threads(threads)
    return threads, source
