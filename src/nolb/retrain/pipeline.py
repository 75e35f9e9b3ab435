"""The commands' one path: stage 1 -> stage 2 -> stage 3 -> report, whole or a stage at a time.

    result = run_pipeline(load_config("demo_digits"), run_dir="runs/demo")   # nolb run
    retrain_run("runs/demo", config)                                         # nolb retrain RUN
    ensemble_run("runs/demo", config)                                        # nolb ensemble RUN

Stage 1 trains the base model (``nolb.engine.train``) unless ``from_run`` names a finished
run.  Stage 2 caches the frozen backbone's features under ``<run>/retrain/features``
(reused by every later command on the run) and writes the heads to
``<run>/retrain/heads/<key>.safetensors`` with ``retrain.json``.  Stage 3 reads those heads,
writes ``<run>/ensemble/ensemble.safetensors`` and ``<run>/final_model.json`` (the
validated best of base, heads and ensemble).  The report (``report/`` of the stage's
folder) compares every row on the test split, which is read only at this last step.
"""

from __future__ import annotations

import os

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.retrain import ranks
from nolb.retrain.feature_source import FeatureSource
from nolb.retrain.report import ReportFiles, reports_from_scores, write_report
from nolb.retrain.scoring import head_logits
from nolb.retrain.stages import (PAPER_ROW, Stage2Result, Stage3Result, run_stage2, run_stage3, save_stage2,
                                 selection_criterion)

STAGE_OUTPUTS = ("retrain/retrain.json", "ensemble/ensemble.json", "report/report.md")
ROW_NAMES = {"base": "base", "paper": None, "nolb": "nolb (val-tuned GML)", "ensemble": "ensemble", **PAPER_ROW}


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` produced."""

    run_dir: Path
    rows: dict[str, Any]
    report: ReportFiles
    stage2: Stage2Result
    stage3: Stage3Result | None
    seconds: dict[str, float]

    @property
    def ensemble_path(self) -> Path | None:
        return self.stage3.ensemble_path if self.stage3 is not None else None


def run_pipeline(
    config: Any = None,
    *,
    run_dir: str | Path | None = None,
    from_run: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] = print,
    command: list[str] | None = None,
) -> PipelineResult | None:
    """Run stages 1-3 and write the comparison report.

    Under ``torchrun`` every rank calls this: stage 1 is data-parallel, feature extraction
    is sharded over the ranks, the rest runs on rank 0 (:mod:`nolb.retrain.ranks`); ranks
    > 0 return None (or raise ``OtherRankExit`` with rank 0's exit code).

    Args:
        config: a ``nolb.config.Config``; with ``from_run`` it may be None (the run's own
            config is used) or supply the ``retrain``/``ensemble`` sections.
        run_dir: stage 1's output folder (default: the engine's ``runs/...`` name).
        from_run: start from this finished stage-1 run instead of training.
        resume: continue an interrupted ``nolb run`` in ``run_dir``: stage 1 resumes from
            its last checkpoint (or returns at once if it had finished), then stages 2 and 3
            run again over the cached features and replace their earlier outputs.
        overwrite: replace existing outputs (stage-1 run dir, or stage 2/3/report outputs;
            the feature cache is always kept and reused while valid).
        quiet: no per-epoch stage-1 lines.
        log: where progress lines go.
        command: the command recorded in stage 1's ``run.json``.

    Returns:
        A :class:`PipelineResult` (None on ranks > 0 under torchrun).
    """
    from nolb.config import validate
    from nolb.engine import train

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if config is not None:
        validate(config)
    if from_run is not None:
        run_path = Path(from_run)
        existing = [name for name in STAGE_OUTPUTS if (run_path / name).exists()]
        if existing and not overwrite:
            raise NolbError(f"{run_path}: already has {existing[0]}; pass --overwrite to replace the stage 2/3 "
                            "outputs (cached features are reused)")
    else:
        if config is None:
            raise NolbError("run_pipeline: give a config or from_run")
        if resume and run_dir is None:
            raise NolbError("run_pipeline: resume needs the run directory to continue")
        run_path = Path(train(config, run_dir=run_dir, resume=resume, overwrite=overwrite and not resume,
                              quiet=quiet, command=command).run_dir)
        seconds["stage1"] = time.perf_counter() - started
    opened = open_run(run_path, config)
    mark = time.perf_counter()
    info = ranks.join(opened.source.device)
    ranks.share_features(opened.source, info)  # under torchrun: each image once over all ranks

    def stages_2_and_3() -> PipelineResult:
        stage2 = run_stage2(opened.source, opened.config.retrain, run_path / "retrain", log=log)
        seconds["stage2"] = time.perf_counter() - mark
        mark3 = time.perf_counter()
        heads = {key: head.head for key, head in stage2.heads.items()}
        stage3 = run_stage3(opened.source, heads, opened.config.ensemble, stage2.criterion, run_dir=run_path,
                            architecture=opened.architecture, checkpoint=opened.checkpoint)
        seconds["stage3"] = time.perf_counter() - mark3
        if stage3.ensemble is not None and opened.source.has("val"):  # issue 20: (T1, T2) map + calibration plots
            write_ensemble_plots(opened.source, stage3.ensemble, opened.config.ensemble, run_path / "ensemble", log)
        rows, report = write_stage_report(opened, heads, stage2.record, stage3, run_path / "report")
        seconds["total"] = time.perf_counter() - started
        return PipelineResult(run_path, rows, report, stage2, stage3, seconds)

    return ranks.on_rank0(stages_2_and_3, info)


def retrain_run(run_dir: str | Path, config: Any, *, out: str | Path | None = None, overwrite: bool = False,
                device: str | None = None, log: Callable[[str], None] = print) -> tuple[Stage2Result, ReportFiles] | None:
    """Stage 2 of a finished run (``nolb retrain RUN``): heads, ``retrain.json`` and a report in ``out``
    (default ``RUN/retrain``, where ``nolb ensemble RUN`` finds them).  Under torchrun: features
    over all ranks, the rest on rank 0; None on ranks > 0."""
    opened = open_run(Path(run_dir), config, device=device, out=Path(out) if out is not None else None)
    out = Path(out) if out is not None else opened.run_dir / "retrain"
    if (out / "retrain.json").exists() and not overwrite:
        raise NolbError(f"{out / 'retrain.json'}: exists; pass --overwrite to replace it (cached features are reused)")
    info = ranks.join(opened.source.device)
    if opened.config.retrain.mode != "online":
        ranks.share_features(opened.source, info)

    def stage_2() -> tuple[Stage2Result, ReportFiles]:
        if opened.config.retrain.mode == "online":
            stage2 = _online_stage2(opened)
        else:
            stage2 = run_stage2(opened.source, opened.config.retrain, None, log=log)
        heads = {key: head.head for key, head in stage2.heads.items()}
        _, report = write_stage_report(opened, heads, stage2.record, None, out / "report")
        save_stage2(out, stage2)
        return stage2, report

    return ranks.on_rank0(stage_2, info)


def ensemble_run(run_dir: str | Path, config: Any, *, out: str | Path | None = None, overwrite: bool = False,
                 device: str | None = None) -> tuple[Stage3Result, ReportFiles] | None:
    """Stage 3 of a run whose stage 2 is done (``nolb ensemble RUN``): the ensemble, the final
    model choice and a report (in ``out``, default ``RUN/ensemble``).  Under torchrun: rank 0
    works, None on ranks > 0."""
    from nolb.io import read_json

    opened = open_run(Path(run_dir), config, device=device)
    out = Path(out) if out is not None else opened.run_dir / "ensemble"
    if (out / "ensemble.json").exists() and not overwrite:
        raise NolbError(f"{out / 'ensemble.json'}: exists; pass --overwrite to replace it")
    record_path = opened.run_dir / "retrain" / "retrain.json"
    heads = load_heads(opened.run_dir / "retrain" / "heads", tuple(opened.source.original_head.weight.shape))
    head_key = opened.config.ensemble.head
    if head_key.endswith(".safetensors"):
        heads[head_key] = load_head(Path(head_key), tuple(opened.source.original_head.weight.shape))
    elif head_key not in heads and "paper" not in heads:
        raise NolbError(f"{opened.run_dir}: no stage-2 head under retrain/heads/; run 'nolb retrain "
                        f"{opened.run_dir}' first, or set ensemble.head=FILE.safetensors")
    record = read_json(record_path) if record_path.is_file() else {}
    info = ranks.join(opened.source.device)
    ranks.share_features(opened.source, info)

    def stage_3() -> tuple[Stage3Result, ReportFiles]:
        criterion, _ = selection_criterion(opened.source, opened.config.retrain)
        stage3 = run_stage3(opened.source, heads, opened.config.ensemble, criterion, run_dir=None)
        if stage3.ensemble is not None:
            from nolb.retrain.ensemble_io import save_ensemble
            from nolb.retrain.final_model import write_final_model

            stage3.ensemble_path = out / "ensemble.safetensors"
            save_ensemble(stage3.ensemble_path, stage3.ensemble, opened.architecture, overwrite=overwrite)
            if out == opened.run_dir / "ensemble":
                stage3.final_path = write_final_model(opened.run_dir, stage3.final, opened.checkpoint)
            if opened.source.has("val"):  # issue 20: (T1, T2) map + calibration plots
                write_ensemble_plots(opened.source, stage3.ensemble, opened.config.ensemble, out)
        _, report = write_stage_report(opened, heads, record, stage3, out / "report")
        return stage3, report

    return ranks.on_rank0(stage_3, info)


@dataclass
class OpenedRun:
    """A finished stage-1 run ready for stages 2-3."""

    run_dir: Path
    config: Any
    source: FeatureSource
    architecture: dict
    checkpoint: str
    title: str


def open_run(target: Path, config: Any = None, *, device: str | None = None, out: Path | None = None) -> OpenedRun:
    """Open a finished run (or a checkpoint file with ``config``) for stages 2-3.

    A run directory gives its model and data; ``config`` then only supplies the
    ``retrain``/``ensemble`` sections (default: the run's own) and the features are cached
    in ``RUN/retrain/features``.  A checkpoint file needs ``config`` (its ``model.name`` and
    data).  With ``out`` the features go to ``OUT/features`` (a checkpoint's default ``out``:
    ``retrain-<file>``).
    """
    from nolb.engine.components import resolve_device
    from nolb.engine.distributed import local_rank
    from nolb.retrain.model_loading import load_run_or_checkpoint

    loaded = load_run_or_checkpoint(target, config=config)
    config = config if config is not None else loaded.config
    r = config.retrain
    run_dir = loaded.run_dir if loaded.run_dir is not None else (out or Path(f"retrain-{target.stem}"))
    cache = (out or run_dir) / "features" if out is not None or loaded.run_dir is None else run_dir / "retrain" / "features"
    source = FeatureSource(loaded.model, loaded.data, classifier=loaded.classifier, views=r.views, cache_dir=cache,
                           batch_size=max(config.train.eval_batch_size, 1),
                           device=resolve_device(device or config.train.device, local_rank()), seed=r.seed, shift_bn=r.shift_bn,
                           extract_dtype=r.extract_dtype)
    checkpoint = "checkpoints/best.json" if (run_dir / "checkpoints" / "best.json").is_file() else "checkpoints/last.json"
    title = f"{loaded.config.data.name}: {loaded.config.model.name} + {loaded.config.loss.name} base"
    return OpenedRun(run_dir, config, source, loaded.architecture, checkpoint, title)


def load_head(path: Path, shape: tuple[int, int]) -> nn.Linear:
    """A stage-2 head file (``weight``/``bias`` safetensors) checked against the run's (C, D)."""
    from nolb.io import load_safetensors

    if not path.is_file():
        raise NolbError(f"{path}: no such head file")
    tensors, _ = load_safetensors(path)
    if set(tensors) != {"weight", "bias"}:
        raise NolbError(f"{path}: not a stage-2 head (expected tensors 'weight' and 'bias', found {sorted(tensors)})")
    if tuple(tensors["weight"].shape) != shape:
        raise NolbError(f"{path}: head of shape {tuple(tensors['weight'].shape)} (classes, features) does not fit "
                        f"the run's model, which needs {shape}")
    head = nn.Linear(shape[1], shape[0])
    head.load_state_dict(tensors)
    return head.eval().requires_grad_(False)


def load_heads(folder: Path, shape: tuple[int, int]) -> dict[str, nn.Linear]:
    """Every ``<key>.safetensors`` head of a run's ``retrain/heads`` folder."""
    return {path.stem: load_head(path, shape) for path in sorted(folder.glob("*.safetensors"))}


def _online_stage2(opened: OpenedRun) -> Stage2Result:
    from nolb.retrain.api import train_online
    from nolb.retrain.settings import HeadSettings

    trained = train_online(opened.source, HeadSettings.from_config(opened.config.retrain))
    trained.details["budget"] = "untuned (the paper's recipe)"
    return Stage2Result(heads={"paper": trained}, record={"heads": {"paper": trained.describe()}, "mode": "online"})


@torch.no_grad()
def write_stage_report(opened: OpenedRun, heads: dict[str, nn.Module], record: dict, stage3: Stage3Result | None,
                       out: Path) -> tuple[dict, ReportFiles]:
    """The test report of every head (and the ensemble): the first and only read of the test split."""
    source = opened.source
    test = source.split("test")
    method = record.get("heads", {}).get("paper", {}).get("settings", {}).get("method", opened.config.retrain.method)
    names = {**ROW_NAMES, "paper": PAPER_ROW.get(method, method)}
    scores = {"base": head_logits(source.original_head, test.features)}
    for key in ("paper", "nolb"):
        if key in heads:
            scores[names[key]] = head_logits(heads[key], test.features)
    if stage3 is not None and stage3.ensemble is not None:
        scores["ensemble"] = stage3.ensemble.forward_heads(test.features.float())
    for key, head in heads.items():
        if key not in ("paper", "nolb") and key in PAPER_ROW:
            scores[PAPER_ROW[key]] = head_logits(head, test.features)
    rows = reports_from_scores(scores, test.labels, source.num_classes, train_counts=source.class_counts.numpy(),
                               class_names=list(getattr(source.data, "class_names", None) or []) or None)
    notes = report_notes(record, stage3, names) + data_notes(source.data, opened.run_dir / "ensemble", out)
    files = write_report(rows, out, title=opened.title, notes=notes)
    return rows, files


def data_notes(data: Any, analysis: Path, out: Path) -> list[str]:
    """Where each split's images came from (train / selection / reported test, never shared) and,
    when the ensemble was analysed into ``analysis``, its plots (relative to the report ``out``)."""
    sources = (getattr(data, "splits", None) or {}).get("sources", {})
    notes = [f"{split} images: {sources[split]}" for split in ("train", "val", "test") if sources.get(split)]
    plots = [analysis / name for name in ("temperature_map.png", "reliability.png", "recall_distribution.png")
             if (analysis / name).is_file()]
    if plots:
        notes.append("ensemble analysis ((T1, T2) map on validation, calibration, sorted recall): "
                     + ", ".join(os.path.relpath(path, out) for path in plots))
    return notes


def report_notes(record: dict, stage3: Stage3Result | None, names: dict) -> list[str]:
    """One line per row: what it was allowed to tune (its budget), what it chose; then the final model."""
    notes = []
    if record.get("criterion"):
        notes.append(f"selection rule (every tuned row): {record['criterion']}")
    for key, head in record.get("heads", {}).items():
        s = head["settings"]
        chosen = f"{s['method']}, lr {s['lr']}, {s['epochs']} epochs, {s['sampler']} sampling, init {s['init']}"
        if s["method"] == "gml":
            chosen += f", prior strength {s['prior_strength']}" + "".join(f", {k} {v}" for k, v in s["loss_options"].items())
        if head.get("tau") is not None:
            chosen = f"tau {head['tau']}"
        elif head.get("best_epoch") is not None and key != "paper":
            chosen += f", best epoch {head['best_epoch']}"
        notes.append(f"{names.get(key, key)}: {chosen} (budget: {head.get('budget', 'n/a')})")
    if stage3 is not None and stage3.ensemble is not None:
        ens = stage3.ensemble
        how = "chosen on validation" if stage3.temperatures is not None else "fixed"
        notes.append(f"ensemble: original head + {stage3.head_key} head, T1 {ens.t1}, T2 {ens.t2} ({how}), "
                     f"{ens.space}-space average")
    if stage3 is not None:
        notes.append(f"final model: {stage3.final.candidate} ({stage3.final.reason}; rule: {stage3.final.rule})")
    notes.append("intervals: 95% stratified bootstrap over test images (1000 resamples)")
    return notes


@torch.no_grad()
def write_ensemble_plots(source: FeatureSource, ensemble: Any, config: Any, out_dir: Path, log: Callable = print) -> None:
    """Issue 20 hook (owner i20): :func:`nolb.metrics.ensemble_analysis.write_ensemble_analysis` into ``ensemble/``."""
    from nolb.metrics.ensemble_analysis import write_ensemble_analysis

    def logits(split):
        return (head_logits(ensemble.original_head, split.features), head_logits(ensemble.new_head, split.features),
                split.labels)

    analysis = write_ensemble_analysis(
        out_dir, val=logits(source.split("val")), test=logits(source.split("test")),
        train_counts=source.class_counts.numpy(), grid=config.temperature_grid, space=config.space,
        criterion=getattr(config, "temperature_criterion", "hm"), ece_bound=getattr(config, "temperature_ece_bound", None),
    )
    log(f"stage 3: (T1, T2) map and calibration plots in {out_dir} (map's choice on val: "
        f"T1 {analysis.choice.t1:g}, T2 {analysis.choice.t2:g})")
