"""Which candidate of a run is its final model: :func:`final_model_of`.

One function, so it is easy to re-point.  Order:

1. ``RUN/final_model.json`` when present: the candidate chosen on validation by stage 3
   (:mod:`nolb.retrain.final_model`; ``kind`` "base" | "head" | "ensemble" and its ``files``);
2. else the ensemble ``RUN/ensemble/ensemble.safetensors``;
3. else a re-trained head: ``RUN/retrain/heads/nolb.safetensors`` (chosen on validation),
   ``.../paper.safetensors``, or ``RUN/retrain/<method>/head.safetensors`` (``nolb retrain``);
4. else the stage-1 model (its validation-selected ``best`` checkpoint).

It also says where the test report of that candidate is (file and row label), for the
model card.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nolb.errors import NolbError
from nolb.io import read_json

STAGES = ("ensemble", "retrain", "stage1")
KINDS = ("base", "head", "ensemble")  # final_model.json's "kind" (nolb.retrain.final_model)


@dataclass
class FinalModel:
    """The final candidate of a run.

    Attributes:
        stage: "ensemble", "retrain" or "stage1".
        path: the ensemble file or the re-trained head file (None for stage 1).
        head_key: the stage-2 head's name (``nolb``, ``paper``, a method) when known.
        report: ``(metrics.json path, row label)`` candidates of its test report, in order.
    """

    stage: str
    path: Path | None
    head_key: str | None
    report: list[tuple[Path, str]]


def head_files(run: Path) -> list[tuple[str, Path]]:
    """Stage-2 head files of a run, in order of preference: ``(key, path)``."""
    heads = [(key, run / "retrain" / "heads" / f"{key}.safetensors") for key in ("nolb", "paper")]
    heads += [(p.parent.name, p) for p in sorted((run / "retrain").glob("*/head.safetensors"))]
    return [(key, path) for key, path in heads if path.is_file()]


def _head_report(run: Path, key: str, path: Path) -> list[tuple[Path, str]]:
    if path.parent.name == "heads":  # `nolb run` (RUN/report) or `nolb retrain` (RUN/retrain/report)
        label = "nolb (val-tuned GML)" if key == "nolb" else "GML (paper)"
        return [(run / "report" / "metrics.json", label), (run / "retrain" / "report" / "metrics.json", label)]
    return [(path.parent / "report" / "metrics.json", f"{key} head")]


def final_model_of(run_dir: str | Path) -> FinalModel:
    """The final model of a run directory (see the module docstring for the order)."""
    run = Path(run_dir)
    stage1_report = [(run / "report" / "metrics.json", "base"), (run / "metrics.json", "test")]
    declared = run / "final_model.json"
    if declared.is_file():
        record = read_json(declared)
        kind, files = record.get("kind"), record.get("files") or {}
        if kind not in KINDS:
            raise NolbError(f"{declared}: 'kind' must be one of {KINDS}, got {kind!r}")
        if kind == "base":
            return FinalModel("stage1", None, None, stage1_report)
        name = files.get("head" if kind == "head" else "ensemble")
        path = run / name if name else None
        if path is None or not path.is_file():
            raise NolbError(f"{declared}: names {name!r}, which is not a file under {run}")
        if kind == "head":
            key = record.get("candidate") or path.stem
            return FinalModel("retrain", path, key, _head_report(run, key, path))
        return FinalModel("ensemble", path, None, _ensemble_report(run, path))
    ensemble = run / "ensemble" / "ensemble.safetensors"
    if ensemble.is_file():
        return FinalModel("ensemble", ensemble, None, _ensemble_report(run, ensemble))
    heads = head_files(run)
    if heads:
        key, path = heads[0]
        return FinalModel("retrain", path, key, _head_report(run, key, path))
    return FinalModel("stage1", None, None, stage1_report)


def _ensemble_report(run: Path, path: Path) -> list[tuple[Path, str]]:
    own = path.parent / "report" / "metrics.json"  # `nolb ensemble`
    return [(own, "ensemble"), (own, "ensemble (prob)"), (own, "ensemble (log)"), (run / "report" / "metrics.json", "ensemble")]
