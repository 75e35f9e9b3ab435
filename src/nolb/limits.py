"""Upper bounds on what one input may make nolb do, and the generic config value check.

Every limit here guards against an input that would otherwise run out of memory or time
(a YAML alias bomb, a dense C x C confusion matrix for a huge ``--num-classes``, a million
bootstrap resamples) or silently wrap (a training count of 1e30 in int64).  Each limit has a
default that covers every real benchmark with room to spare and can be raised with an
environment variable named in its error message (``NOLB_MAX_CLASSES=50000 nolb evaluate ...``).
:func:`check_config_values` is the one check every config passes: each number finite and
each integer within :data:`MAX_CONFIG_INT` (floats :data:`MAX_CONFIG_FLOAT`), each device string well formed.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from nolb.errors import NolbError

MAX_CONFIG_INT = 2**31 - 1  # epochs, batch sizes, seeds, widths: anything larger is a typo (or 1e30)
MAX_CONFIG_FLOAT = 1e12  # learning rates, temperatures, ratios: no setting means anything beyond this
MAX_TRAIN_COUNT = 2**53  # exact in float64 and int64: a larger training count is not a count
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,3})?)$")

_DEFAULTS = {
    "NOLB_MAX_YAML_BYTES": 1 << 20,  # a recipe is a few hundred bytes
    "NOLB_MAX_YAML_NODES": 100_000,  # YAML nodes after alias expansion
    "NOLB_MAX_CLASSES": 32_768,  # covers ImageNet-21k (21,841); the confusion matrix is C x C int64
    "NOLB_MAX_BOOTSTRAP": 100_000,
    "NOLB_MAX_ARRAY_BYTES": 8 << 30,  # one array read from an .npz
}


def limit(name: str) -> int:
    """The limit ``name`` (e.g. ``"NOLB_MAX_CLASSES"``): its environment value or the default."""
    text = os.environ.get(name)
    if text is None:
        return _DEFAULTS[name]
    try:
        value = int(text)
    except ValueError:
        raise NolbError(f"environment variable {name}={text!r} is not a whole number") from None
    if value < 1:
        raise NolbError(f"environment variable {name}={text!r} must be >= 1")
    return value


def check_at_most(value: int, name: str, what: str) -> None:
    """Refuse ``value`` above limit ``name`` in one line that says how to raise the limit."""
    bound = limit(name)
    if value > bound:
        raise NolbError(f"{what} is {value}, above the limit of {bound} (set {name} to raise it)")


def check_config_values(raw: Any, where: Any = None) -> None:
    """Every number in the config tree ``raw`` (a ``Config.to_dict()``) finite and bounded.

    Args:
        raw: Nested dicts/lists of plain values.
        where: ``where(path_tuple) -> "file:line: "`` prefix for the message (optional).

    Raises:
        NolbError: naming the first offending key, e.g. ``config key 'optim.lr' must be a
            finite number, got inf``.
    """
    for path, value in _leaves(raw, ()):
        key = ".".join(str(p) for p in path)
        prefix = where(path) if where is not None else ""
        if isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise NolbError(f"{prefix}config key {key!r} must be a finite number, got {value!r}")
        if isinstance(value, float) and abs(value) > MAX_CONFIG_FLOAT:
            raise NolbError(f"{prefix}config key {key!r} is out of range (|value| <= {MAX_CONFIG_FLOAT:g}), got {value!r}")
        if isinstance(value, int) and abs(value) > MAX_CONFIG_INT:
            raise NolbError(f"{prefix}config key {key!r} is out of range (|value| <= {MAX_CONFIG_INT}), got {value!r}")
        if path and path[-1] == "device" and isinstance(value, str) and not DEVICE_PATTERN.match(value):
            raise NolbError(f"{prefix}config key {key!r} must be auto, cpu, mps, cuda or cuda:N, got {value!r}")


def _leaves(node: Any, path: tuple):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, path + (key,))
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _leaves(value, path)
    else:
        yield path, node
