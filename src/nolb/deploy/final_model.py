"""Which candidate of a run is its final model: :func:`final_model_of`.

One function, so it is easy to re-point.  Order:

1. ``RUN/final_model.json`` when present: the candidate stage 3 chose on validation among
   base, the stage-2 heads and the ensemble (:mod:`nolb.retrain.final_model`; ``kind``
   "base" | "head" | "ensemble" and its ``files``, relative to the run);
2. else (no stage 3 yet) the ensemble ``RUN/ensemble/ensemble.safetensors``;
3. else a stage-2 head of ``RUN/retrain/heads/``: ``nolb`` (validation-tuned), ``paper``,
   then the others by name;
4. else the stage-1 model (its validation-selected ``best`` checkpoint).

It also says where the test report rows of that candidate may be: ``RUN/report`` (``nolb
run``), ``RUN/retrain/report`` (``nolb retrain``) and ``RUN/ensemble/report`` (``nolb
ensemble``), under the row label the reports use (``base``, ``nolb (val-tuned GML)``,
``GML (paper)``, ``ensemble``, ...); the model card reads the newest of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nolb.errors import NolbError
from nolb.io import read_json

STAGES = ("ensemble", "retrain", "stage1")
KINDS = ("base", "head", "ensemble")  # final_model.json's "kind" (nolb.retrain.final_model)
HEAD_ORDER = ("nolb", "paper")  # preferred heads when no final_model.json says otherwise
REPORT_DIRS = ("report", "retrain/report", "ensemble/report")  # nolb run, nolb retrain, nolb ensemble


@dataclass
class FinalModel:
    """The final candidate of a run.

    Attributes:
        stage: "ensemble", "retrain" or "stage1".
        path: the ensemble file or the stage-2 head file (None for stage 1).
        head_key: the stage-2 head's key (``nolb``, ``paper``, ``crt``, ...) when known.
        report: ``(metrics.json path, row label)`` places of its test report.
        candidate: the candidate's name (``base``, a head key, ``ensemble``).
        choice: the ``final_model.json`` record when the run declared its final model.
    """

    stage: str
    path: Path | None
    head_key: str | None
    report: list[tuple[Path, str]]
    candidate: str = ""
    choice: dict[str, Any] | None = field(default=None)


def head_files(run: Path) -> list[tuple[str, Path]]:
    """Stage-2 head files ``RUN/retrain/heads/<key>.safetensors``, in order of preference."""
    found = {path.stem: path for path in sorted((run / "retrain" / "heads").glob("*.safetensors"))}
    order = [key for key in HEAD_ORDER if key in found] + [key for key in found if key not in HEAD_ORDER]
    return [(key, found[key]) for key in order]


def head_row_label(run: Path, key: str) -> str:
    """The reports' row label of stage-2 head ``key`` (the paper head's label names its method)."""
    from nolb.retrain.pipeline import ROW_NAMES
    from nolb.retrain.stages import PAPER_ROW

    if key == "paper":
        record = run / "retrain" / "retrain.json"
        heads = read_json(record).get("heads", {}) if record.is_file() else {}
        method = ((heads.get("paper") or {}).get("settings") or {}).get("method", "gml")
        return PAPER_ROW.get(method, method)
    return ROW_NAMES.get(key) or PAPER_ROW.get(key, key)


def _reports(run: Path, label: str) -> list[tuple[Path, str]]:
    return [(run / folder / "metrics.json", label) for folder in REPORT_DIRS]


def final_model_of(run_dir: str | Path) -> FinalModel:
    """The final model of a run directory (see the module docstring for the order)."""
    run = Path(run_dir)
    declared = run / "final_model.json"
    if declared.is_file():
        return _declared(run, declared, read_json(declared))
    ensemble = run / "ensemble" / "ensemble.safetensors"
    if ensemble.is_file():
        return FinalModel("ensemble", ensemble, None, _reports(run, "ensemble"), "ensemble")
    heads = head_files(run)
    if heads:
        key, path = heads[0]
        return FinalModel("retrain", path, key, _reports(run, head_row_label(run, key)), key)
    return _base(run, None)


def _base(run: Path, choice: dict | None) -> FinalModel:
    return FinalModel("stage1", None, None, _reports(run, "base") + [(run / "metrics.json", "test")], "base", choice)


def _declared(run: Path, declared: Path, record: dict) -> FinalModel:
    kind, files = record.get("kind"), record.get("files") or {}
    if kind not in KINDS:
        raise NolbError(f"{declared}: 'kind' must be one of {KINDS}, got {kind!r}")
    if kind == "base":
        return _base(run, record)
    name = files.get("head" if kind == "head" else "ensemble")
    path = run / name if name else None
    if path is None or not path.is_file():
        raise NolbError(f"{declared}: names {name!r}, which is not a file under {run}")
    if kind == "ensemble":
        return FinalModel("ensemble", path, None, _reports(run, "ensemble"), record.get("candidate") or "ensemble",
                          record)
    key = record.get("candidate") or path.stem
    return FinalModel("retrain", path, key, _reports(run, head_row_label(run, key)), key, record)
