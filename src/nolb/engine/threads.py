"""How many CPU threads a run uses: ``train.threads`` (``auto`` or a number), overridable by
the ``NOLB_THREADS`` and ``OMP_NUM_THREADS`` environment variables.

``auto`` gives each process on this machine an equal share of its cores
(``os.sched_getaffinity``; ``LOCAL_WORLD_SIZE`` processes under torchrun), at least 1.
Measured on a 2-core machine loaded by other jobs (``benchmarks/threads.py``,
docs/PERFORMANCE.md "CPU threads"): what decides the speed is that waiting OpenMP threads
sleep (``OMP_WAIT_POLICY=PASSIVE``, which the ``nolb`` command sets unless it is exported):
with OpenMP's spinning default, 2 threads ran 3-24x slower than with PASSIVE.  With PASSIVE,
2 threads against 1 was a tie within the noise with only other users' load (0.75x and
0.88x, single repetitions 0.5-2.5x) and faster with one more core-spinning process (1.6x
small CNN, 3.3x ResNet-32), so ``auto`` uses every core.  The count is printed in the run
header and recorded in ``run.json``.
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


def auto_threads(processes: int = 1, cores: int | None = None) -> int:
    """The cores per process on this machine (at least 1)."""
    cores = available_cores() if cores is None else cores
    return max(1, cores // max(1, processes))


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
