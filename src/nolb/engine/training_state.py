"""Serialising what a checkpoint must hold besides the weights: optimizer, scaler, RNGs.

Optimizer tensors (momentum buffers) go to a safetensors file under flat keys
``state.<param index>.<name>``; everything else is JSON.  RNG states (torch, numpy,
python, CUDA) are stored so a resumed run continues the same random streams.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch


def split_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(json_part, tensors)`` of ``optimizer.state_dict()``."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}, tensors


def merge_optimizer_state(json_part: dict, tensors: dict[str, torch.Tensor]) -> dict:
    """The inverse of :func:`split_optimizer_state`: a dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entry in json_part.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": json_part["param_groups"]}


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.cpu().numpy().tobytes()).decode("ascii")


def _from_b64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def rng_states() -> dict:
    """The torch, numpy, python (and CUDA) RNG states as JSON-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    out = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(_from_b64(states["torch"]))
    n = states["numpy"]
    np.random.set_state((n["kind"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_from_b64(s) for s in states["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
