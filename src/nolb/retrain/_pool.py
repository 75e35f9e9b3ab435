"""Feature matrices converted once to a contiguous in-RAM working copy (and remembered).

Stage 2 trains many heads on the same cached features (validation selection: every
candidate; baselines; early stopping scores every epoch on the same validation split).
Cached features are float16, often memory-mapped; gathering random rows of such a
matrix and converting each batch to float32 costs more than the head's matmul on a CPU.
:func:`working_copy` converts a matrix once to a contiguous tensor of the dtype asked
for and keeps the last few conversions while their source tensor is alive, so that
repeated calls (the next candidate, the next epoch's validation pass) cost nothing.

The cache holds at most :data:`MAX_ENTRIES` conversions and forgets an entry as soon as
its source tensor is garbage collected (it keeps only a weak reference to the source).
A source modified in place (its version counter moves) is converted again.
"""

from __future__ import annotations

import weakref

import torch

__all__ = ["working_copy", "clear_cache", "MAX_ENTRIES"]

MAX_ENTRIES = 4
_CACHE: list[tuple[weakref.ref, tuple, torch.Tensor]] = []


def _key(tensor: torch.Tensor, dtype: torch.dtype) -> tuple:
    return (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype, tensor._version, dtype)


def clear_cache() -> None:
    """Forget every remembered conversion."""
    _CACHE.clear()


def working_copy(features: torch.Tensor, dtype: torch.dtype = torch.float32, *, cache: bool = True) -> torch.Tensor:
    """``features`` as a contiguous CPU-resident tensor of ``dtype`` (converted at most once).

    A tensor that is already contiguous and of ``dtype`` is returned as is (no copy).

    Args:
        features: (M, D) tensor of any floating dtype (a memory map is fine).
        dtype: the working dtype (float32, or bfloat16 for the bf16 matmul path).
        cache: remember the conversion while ``features`` is alive.

    Returns:
        A contiguous tensor equal to ``features.to(dtype)``.
    """
    if features.dtype == dtype and features.is_contiguous():
        return features
    if not cache:
        return features.to(dtype).contiguous()
    key = _key(features, dtype)
    for index, (ref, entry_key, converted) in enumerate(_CACHE):
        if ref() is features and entry_key == key:
            _CACHE.insert(0, _CACHE.pop(index))  # most recently used first
            return converted
    converted = features.to(dtype).contiguous()
    _CACHE[:] = [entry for entry in _CACHE if entry[0]() is not None and entry[0]() is not features]
    ref = weakref.ref(features, _forget)
    _CACHE.insert(0, (ref, key, converted))
    del _CACHE[MAX_ENTRIES:]
    return converted


def _forget(ref: weakref.ref) -> None:
    _CACHE[:] = [entry for entry in _CACHE if entry[0] is not ref]
