"""The (T1, T2) map of the two-head ensemble, its selection rules, and temperature scaling.

The ensemble of METHOD.md section 5 averages ``softmax(z1 / T1)`` and ``softmax(z2 / T2)``
(``space="prob"``; ``"log"``: the normalised geometric mean).  :func:`temperature_map`
evaluates it on every (T1, T2) of a grid -- on the **validation** split only -- and returns
HM, GM, AM, lowest recall, accuracy, ECE and NLL per point, so the trade-off between the
worst classes and calibration can be seen (:func:`plot_temperature_map`).

:func:`select_point` is the selection rule, a pure function of the map:

* ``"hm"``: the largest HM (ties: AM, then the pair nearest (1, 1) in log-distance, then
  grid order) -- the same rule as ``nolb.retrain.ensemble.select_temperatures``;
* ``"hm_ece"``: the same among the points whose ECE is at most ``ece_bound`` (when none
  qualifies: the point of lowest ECE, and the choice says so);
* ``"nll"``: the smallest NLL (the calibration-optimal pair).

:func:`fit_temperature` is post-hoc temperature scaling of one head (Guo et al. 2017): the
single T minimising validation NLL, found by L-BFGS on ``log T``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from nolb.errors import NolbError
from nolb.metrics.calibration import expected_calibration_error
from nolb.metrics.recall import as_label_vector, geometric_mean, harmonic_mean, to_numpy

MAP_METRICS = ("hm", "gm", "am", "lowest", "accuracy", "ece", "nll")
CRITERIA = ("hm", "hm_ece", "nll")
SPACES = ("prob", "log")
DEFAULT_GRID = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def ensemble_probabilities(z1: Any, z2: Any, t1: float, t2: float, space: str = "prob") -> tuple[np.ndarray, np.ndarray]:
    """(probs, log_probs) of the two-head ensemble at (t1, t2), float64 numpy arrays."""
    if space not in SPACES:
        raise NolbError(f"temperature map: space must be one of {SPACES}, got {space!r}")
    if not all(math.isfinite(t) and t > 0 for t in (t1, t2)):
        raise NolbError(f"temperature map: temperatures must be positive finite numbers, got {t1}, {t2}")
    log1 = _log_softmax(_float64(z1, "z1") / t1)
    log2 = _log_softmax(_float64(z2, "z2") / t2)
    log_probs = np.logaddexp(log1, log2) - math.log(2.0) if space == "prob" else _log_softmax((log1 + log2) / 2)
    return np.exp(log_probs), log_probs


def point_metrics(log_probs: np.ndarray, labels: np.ndarray, zero_recall: float = 1e-3) -> dict[str, float]:
    """HM, GM, AM, lowest recall, accuracy, ECE and NLL of one (N, C) log-probability matrix."""
    num_classes = log_probs.shape[1]
    pred = log_probs.argmax(axis=1)
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise NolbError(f"temperature map: class {int(np.flatnonzero(counts == 0)[0])} has no validation sample")
    recall = np.bincount(labels[pred == labels], minlength=num_classes) / counts
    return {
        "hm": float(harmonic_mean(recall, zero_recall)),
        "gm": float(geometric_mean(recall, zero_recall)),
        "am": float(recall.mean()),
        "lowest": float(recall.min()),
        "accuracy": float((pred == labels).mean()),
        "ece": expected_calibration_error(np.exp(log_probs), labels),
        "nll": float(-log_probs[np.arange(labels.shape[0]), labels].mean()),
    }


@dataclass(frozen=True)
class TemperatureMap:
    """Validation metrics over a (T1, T2) grid: ``values[metric][i, j]`` at ``(t1s[i], t2s[j])``."""

    t1s: tuple[float, ...]
    t2s: tuple[float, ...]
    space: str
    values: dict[str, np.ndarray]

    def to_dict(self) -> dict[str, Any]:
        return {"t1s": list(self.t1s), "t2s": list(self.t2s), "space": self.space,
                "values": {name: array.tolist() for name, array in self.values.items()}}


def temperature_map(
    z1: Any, z2: Any, labels: Any, t1s: Sequence[float] = DEFAULT_GRID, t2s: Sequence[float] | None = None,
    *, space: str = "prob", zero_recall: float = 1e-3,
) -> TemperatureMap:
    """Evaluate the ensemble on every (T1, T2) of the grid (pass validation logits, never test).

    Args:
        z1, z2: (N, C) logits of the original and the re-trained head (numpy or torch).
        labels: (N,) labels; every class needs a sample.
        t1s, t2s: the temperatures of each head (``t2s`` defaults to ``t1s``).
        space: ``"prob"`` (the paper's average of probabilities) or ``"log"``.
        zero_recall: the value a recall of 0 takes in HM and GM.

    Returns:
        The :class:`TemperatureMap`.
    """
    t2s = t1s if t2s is None else t2s
    if not len(t1s) or not len(t2s):
        raise NolbError("temperature map: empty temperature grid")
    a, b = _float64(z1, "z1"), _float64(z2, "z2")
    if a.ndim != 2 or a.shape != b.shape:
        raise NolbError(f"temperature map: z1 and z2 must have the same (N, C) shape, got {a.shape} and {b.shape}")
    y = as_label_vector(labels, "labels", a.shape[1])
    if y.shape[0] != a.shape[0]:
        raise NolbError(f"temperature map: {y.shape[0]} labels for {a.shape[0]} rows of logits")
    values = {name: np.zeros((len(t1s), len(t2s))) for name in MAP_METRICS}
    for i, t1 in enumerate(t1s):
        for j, t2 in enumerate(t2s):
            _, log_probs = ensemble_probabilities(a, b, float(t1), float(t2), space)
            for name, value in point_metrics(log_probs, y, zero_recall).items():
                values[name][i, j] = value
    return TemperatureMap(tuple(float(t) for t in t1s), tuple(float(t) for t in t2s), space, values)


@dataclass(frozen=True)
class TemperatureChoice:
    """The point a rule chose: its temperatures, grid index, validation values and the rule."""

    t1: float
    t2: float
    index: tuple[int, int]
    criterion: str
    ece_bound: float | None
    validation: dict[str, float]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"t1": self.t1, "t2": self.t2, "index": list(self.index), "criterion": self.criterion,
                "ece_bound": self.ece_bound, "validation": dict(self.validation), "note": self.note}


def select_point(grid: TemperatureMap, criterion: str = "hm", ece_bound: float | None = None) -> TemperatureChoice:
    """Choose (T1, T2) on the map by ``criterion`` (see the module docstring).

    Args:
        grid: a validation :class:`TemperatureMap`.
        criterion: ``"hm"``, ``"hm_ece"`` (needs ``ece_bound``, a fraction) or ``"nll"``.
        ece_bound: the largest admissible validation ECE for ``"hm_ece"``.

    Returns:
        The :class:`TemperatureChoice`.
    """
    if criterion not in CRITERIA:
        raise NolbError(f"temperature map: criterion must be one of {CRITERIA}, got {criterion!r}")
    if criterion == "hm_ece" and (ece_bound is None or not 0 <= ece_bound <= 1):
        raise NolbError(f"temperature map: criterion 'hm_ece' needs ece_bound in [0, 1], got {ece_bound!r}")
    values = grid.values
    closeness = -np.add.outer(np.abs(np.log(grid.t1s)), np.abs(np.log(grid.t2s)))
    note = ""
    if criterion == "nll":
        keys = [(-values["nll"][i, j], values["hm"][i, j], closeness[i, j]) for i, j in _cells(grid)]
    else:
        allowed = np.ones_like(values["hm"], dtype=bool)
        if criterion == "hm_ece":
            allowed = values["ece"] <= ece_bound
            if not allowed.any():
                allowed = values["ece"] == values["ece"].min()
                note = f"no point has validation ECE <= {ece_bound:g}; the point of lowest ECE was taken"
        keys = [(bool(allowed[i, j]), values["hm"][i, j], values["am"][i, j], closeness[i, j]) for i, j in _cells(grid)]
    best = max(range(len(keys)), key=lambda k: (keys[k], -k))
    i, j = divmod(best, len(grid.t2s))
    return TemperatureChoice(grid.t1s[i], grid.t2s[j], (i, j), criterion, ece_bound,
                             {name: float(values[name][i, j]) for name in MAP_METRICS}, note)


def fit_temperature(logits: Any, labels: Any, *, max_iter: int = 100) -> float:
    """Post-hoc temperature scaling: the T > 0 minimising the NLL of ``softmax(logits / T)``.

    Fit on validation logits (never test).  L-BFGS (torch) on ``log T`` from T = 1, in float64
    on the logits' device.

    Args:
        logits: (N, C) validation logits (numpy or torch).
        labels: (N,) validation labels.
        max_iter: L-BFGS iterations.

    Returns:
        The temperature as a Python float.
    """
    import torch

    scores = logits.detach().double() if isinstance(logits, torch.Tensor) else torch.from_numpy(_float64(logits, "logits"))
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise NolbError(f"temperature scaling: logits must have shape (N, C) with N > 0, got {tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise NolbError("temperature scaling: logits contain NaN or infinite values")
    target = torch.as_tensor(as_label_vector(labels, "labels", scores.shape[1]), device=scores.device)
    if target.shape[0] != scores.shape[0]:
        raise NolbError(f"temperature scaling: {target.shape[0]} labels for {scores.shape[0]} rows of logits")
    log_t = torch.zeros((), dtype=torch.float64, device=scores.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(scores / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def _cells(grid: TemperatureMap):
    return [(i, j) for i in range(len(grid.t1s)) for j in range(len(grid.t2s))]


def _float64(values: Any, what: str) -> np.ndarray:
    array = to_numpy(values, what)
    if array.dtype.kind not in "fiu":
        raise NolbError(f"{what}: logits must be numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def _log_softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - values.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

