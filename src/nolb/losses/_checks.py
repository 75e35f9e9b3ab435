"""Input checks shared by the losses: class counts, scalar options and batches.

Every failure raises :class:`nolb.errors.NolbError` (a ``ValueError``) whose one-line
message names the loss, the option and the offending value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from nolb.errors import NolbError, did_you_mean

__all__ = ["as_class_counts", "check_choice", "check_real", "check_batch"]


def as_class_counts(values: Any, *, owner: str, positive: bool) -> torch.Tensor:
    """Convert per-class training counts to a 1-D int64 tensor after checking them.

    Args:
        values: A tensor, NumPy array or sequence of C non-negative whole numbers.
        owner: The name of the loss, used in error messages.
        positive: If True every count must be >= 1 (the loss takes ``log n_c`` or
            ``n_c ** (-1/4)``); otherwise zeros are allowed.

    Returns:
        An int64 CPU tensor of shape (C,).

    Raises:
        NolbError: Wrong shape, empty, non-finite, fractional, negative or (when
            ``positive``) zero counts.
    """
    try:
        counts = torch.as_tensor(values).detach().to("cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise NolbError(f"{owner}: class_counts must be numeric, got {type(values).__name__} ({error})") from None
    if counts.ndim != 1 or counts.numel() == 0:
        raise NolbError(f"{owner}: class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    if not torch.isfinite(counts).all():
        raise NolbError(f"{owner}: class_counts must be finite")
    if (counts != counts.round()).any():
        bad = int(torch.nonzero(counts != counts.round())[0])
        raise NolbError(f"{owner}: class_counts must be whole numbers, class {bad} has {counts[bad].item()}")
    if (counts < 0).any():
        bad = int(torch.nonzero(counts < 0)[0])
        raise NolbError(f"{owner}: class_counts must be >= 0, class {bad} has {int(counts[bad])}")
    if positive and (counts == 0).any():
        bad = int(torch.nonzero(counts == 0)[0])
        raise NolbError(
            f"{owner}: class {bad} has a training count of 0 but this loss needs log n_c "
            "(or a power of n_c); drop the class or give it a count >= 1"
        )
    return counts.to(torch.int64)


def check_real(
    owner: str,
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the given bounds.

    Args:
        owner: The loss name for the error message.
        name: The option name for the error message.
        value: The user-supplied value (bools and non-numbers are rejected).
        minimum: Lower bound, inclusive unless ``strict_minimum``.
        maximum: Upper bound, inclusive unless ``strict_maximum``.
        strict_minimum: Exclude ``minimum`` itself.
        strict_maximum: Exclude ``maximum`` itself.

    Returns:
        The value as a Python float.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise NolbError(f"{owner}: {name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise NolbError(f"{owner}: {name} must be finite, got {value!r}")
    if minimum is not None and (number < minimum or (strict_minimum and number == minimum)):
        relation = ">" if strict_minimum else ">="
        raise NolbError(f"{owner}: {name} must be {relation} {minimum:g}, got {value!r}")
    if maximum is not None and (number > maximum or (strict_maximum and number == maximum)):
        relation = "<" if strict_maximum else "<="
        raise NolbError(f"{owner}: {name} must be {relation} {maximum:g}, got {value!r}")
    return number


def check_choice(owner: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a message listing them."""
    if value not in choices:
        raise NolbError(f"{owner}: unknown {name} {value!r}{did_you_mean(value, choices)}, "
                        f"expected one of ({', '.join(choices)})")
    return value


def check_batch(owner: str, logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Check a (logits, target) batch and return the logits in at least float32.

    Half-precision logits (fp16, bf16) are promoted to float32; float64 stays float64 so
    that gradients can be checked in double precision. The value range of ``target`` is
    checked only for CPU tensors (on an accelerator it would force a host sync; the
    indexing kernels then report out-of-range labels themselves).

    Args:
        owner: The loss name for the error message.
        logits: Scores of shape (N, C), floating point.
        target: Class indices of shape (N,), an integer dtype.
        num_classes: C, the number of classes the loss was built for.

    Returns:
        ``logits`` as float32 or float64.
    """
    if not torch.is_floating_point(logits):
        raise NolbError(f"{owner}: logits must be floating point, got {logits.dtype}")
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise NolbError(f"{owner}: logits must have shape (N, {num_classes}), got {tuple(logits.shape)}")
    if target.ndim != 1 or target.shape[0] != logits.shape[0]:
        raise NolbError(f"{owner}: target must have shape ({logits.shape[0]},), got {tuple(target.shape)}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise NolbError(f"{owner}: target must hold integer class indices, got {target.dtype}")
    if logits.shape[0] == 0:
        raise NolbError(f"{owner}: empty batch (N = 0)")
    if target.device.type == "cpu" and ((target < 0).any() or (target >= num_classes).any()):
        bad = target[(target < 0) | (target >= num_classes)][0].item()
        raise NolbError(f"{owner}: target holds class index {bad}, expected 0..{num_classes - 1}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits
