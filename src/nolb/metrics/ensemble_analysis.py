"""What the ensemble's temperatures do: the (T1, T2) map, calibration and recall plots of the heads.

:func:`write_ensemble_analysis` takes the two heads' logits on the validation split (and,
optionally, on the test split) and writes into one folder:

* ``temperature_map.json``: the validation map over the grid, the rule and the chosen
  (T1, T2); with test logits, the test metrics (recall and calibration, with intervals) of
  each row: the original head, the original head with post-hoc temperature scaling (one T
  fitted on validation NLL), the re-trained head (raw and temperature-scaled), the ensemble
  at (1, 1) and at the chosen pair;
* ``temperature_map.png``: the heat maps (:mod:`nolb.metrics.temperature_map_plot`);
* ``reliability.png`` and ``recall_distribution.png`` of the test rows
  (:mod:`nolb.metrics.analysis_plots`), only with test logits.

Everything that is chosen (T1, T2 and the scaling temperatures) is chosen on validation;
the test split only measures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


from nolb.errors import NolbError
from nolb.io import write_json
from nolb.metrics.analysis_plots import plot_recall_distribution, plot_reliability
from nolb.metrics.recall import to_numpy
from nolb.metrics.report import RecallReport, recall_report
from nolb.metrics.temperature_map import (
    DEFAULT_GRID,
    TemperatureChoice,
    TemperatureMap,
    ensemble_probabilities,
    fit_temperature,
    select_point,
    temperature_map,
)
from nolb.metrics.temperature_map_plot import plot_temperature_map


@dataclass
class EnsembleAnalysis:
    """The map, the choice, the test rows (``{label: RecallReport}``) and the files written."""

    grid: TemperatureMap
    choice: TemperatureChoice
    scaling: dict[str, float]
    rows: dict[str, RecallReport] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def write_ensemble_analysis(
    out_dir: str | os.PathLike,
    *,
    val: tuple[Any, Any, Any],
    test: tuple[Any, Any, Any] | None = None,
    train_counts: Any = None,
    class_names: Sequence[str] | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    space: str = "prob",
    criterion: str = "hm",
    ece_bound: float | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> EnsembleAnalysis:
    """Sweep (T1, T2) on validation, choose by ``criterion``, measure on test, write JSON + plots.

    Args:
        out_dir: the folder (e.g. ``<run>/ensemble/``); files in it are replaced.
        val: ``(z1, z2, labels)`` validation logits of the original and the re-trained head.
        test: the same on the test split, or None (then only the map is written).
        train_counts: (C,) training images per class (groups and the recall plot).
        class_names: names for the JSON.
        grid: the temperatures tried for each head.
        space: ``"prob"`` or ``"log"`` averaging.
        criterion, ece_bound: the rule (:func:`~nolb.metrics.temperature_map.select_point`).
        bootstrap, seed: the test intervals.

    Returns:
        The :class:`EnsembleAnalysis`.
    """
    out = Path(out_dir)
    z1_val, z2_val, y_val = val
    grid_map = temperature_map(z1_val, z2_val, y_val, grid, space=space)
    choice = select_point(grid_map, criterion, ece_bound)
    scaling = {"original": fit_temperature(z1_val, y_val), "retrained": fit_temperature(z2_val, y_val)}
    rows: dict[str, RecallReport] = {}
    if test is not None:
        z1, z2, y = (to_numpy(v, name) for v, name in zip(test, ("z1", "z2", "labels")))
        if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[1] != to_numpy(z1_val, "z1").shape[1]:
            raise NolbError("ensemble analysis: test logits must have the validation logits' number of classes")
        options = dict(num_classes=z1.shape[1], train_counts=train_counts, class_names=class_names,
                       bootstrap=bootstrap, seed=seed)
        candidates = {
            "original head": (z1, "logits"),
            f"original head, T={scaling['original']:.3g} (val NLL)": (z1 / scaling["original"], "logits"),
            "re-trained head": (z2, "logits"),
            f"re-trained head, T={scaling['retrained']:.3g} (val NLL)": (z2 / scaling["retrained"], "logits"),
            "ensemble T1=T2=1": (ensemble_probabilities(z1, z2, 1.0, 1.0, space)[1], "logits"),
            f"ensemble T1={choice.t1:g}, T2={choice.t2:g} ({criterion})":
                (ensemble_probabilities(z1, z2, choice.t1, choice.t2, space)[1], "logits"),
        }
        rows = {label: recall_report(y, scores, calibration=kind, **options) for label, (scores, kind) in candidates.items()}
    chosen_test = next(reversed(rows.values())).to_dict() if rows else None
    files = {"json": out / "temperature_map.json", "map": out / "temperature_map.png"}
    plot_temperature_map(grid_map, choice, files["map"], test_values=chosen_test)
    if rows:
        files["reliability"] = out / "reliability.png"
        files["recall_distribution"] = out / "recall_distribution.png"
        reliability_rows = {k: v for k, v in rows.items() if k != "ensemble T1=T2=1"}
        plot_reliability(reliability_rows, files["reliability"])
        distribution_rows = {k: v for k, v in rows.items() if "T=" not in k}
        plot_recall_distribution(distribution_rows, files["recall_distribution"])
    write_json(files["json"], {
        "rule": "every choice on the validation split; the test split only measures",
        "map": grid_map.to_dict(),
        "choice": choice.to_dict(),
        "temperature_scaling": scaling,
        "test": {label: _summary(report) for label, report in rows.items()},
        "test_at_choice": None if chosen_test is None else _summary(next(reversed(rows.values()))),
    })
    return EnsembleAnalysis(grid_map, choice, scaling, rows, files)


def _summary(report: RecallReport) -> dict[str, Any]:
    full = report.to_dict()
    keys = ("accuracy", "am", "gm", "hm", "lowest", "num_zero", "many", "medium", "few",
            "ece", "classwise_ece", "nll", "brier", "intervals")
    return {**{key: full.get(key) for key in keys}, "calibration_groups": full["calibration"]["groups"]}
