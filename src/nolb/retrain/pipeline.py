"""The whole method end to end: stage 1 -> stage 2 -> stage 3 -> report.

    result = run_pipeline(load_config("configs/demo_digits.yaml"), run_dir="runs/demo")

Stage 1 trains the base model (``nolb.engine.train``) unless ``from_run`` names a finished
run; stage 2 caches the frozen backbone's features under ``<run>/retrain/features`` (reused
by any later pipeline on the same run) and trains the heads; stage 3 writes the ensemble
to ``<run>/ensemble/``; the report (``<run>/report/``) compares every row on the test
split, which is read only at this last step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from nolb.errors import NolbError
from nolb.retrain.config import check_stage_configs
from nolb.retrain.ensemble_io import save_ensemble
from nolb.retrain.feature_source import FeatureSource
from nolb.retrain.report import ReportFiles, reports_from_scores, write_report
from nolb.retrain.scoring import head_logits
from nolb.retrain.stages import PAPER_ROW, Stage2Result, run_stage2, run_stage3

STAGE_OUTPUTS = ("retrain/retrain.json", "ensemble/ensemble.json", "report/report.md")


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` produced."""

    run_dir: Path
    rows: dict[str, Any]
    report: ReportFiles
    stage2: Stage2Result
    ensemble_path: Path | None
    seconds: dict[str, float]


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
) -> PipelineResult:
    """Run stages 1-3 and write the comparison report.

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
        A :class:`PipelineResult`.
    """
    from nolb.engine import load_trained, train
    from nolb.engine.components import resolve_device

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if config is not None:
        check_stage_configs(config.retrain, config.ensemble)
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
    model, run_config, data = load_trained(run_path)
    config = config if config is not None else run_config
    device = resolve_device(config.train.device)
    r = config.retrain
    source = FeatureSource(model, data, views=r.views, cache_dir=run_path / "retrain" / "features",
                           batch_size=max(config.train.eval_batch_size, 1), device=device, seed=r.seed,
                           shift_bn=r.shift_bn)
    mark = time.perf_counter()
    stage2 = run_stage2(source, r, run_path / "retrain", log=log)
    seconds["stage2"] = time.perf_counter() - mark
    mark = time.perf_counter()
    ensemble, ensemble_path, choice, key = None, None, None, None
    if config.ensemble.enabled:
        key = config.ensemble.head if config.ensemble.head in stage2.heads else "paper"
        ensemble, choice = run_stage3(source, stage2.heads[key].head, config.ensemble)
        m = run_config.model
        architecture = {"model": m.name, "num_classes": data.num_classes, "in_channels": data.in_channels,
                        "head": m.head, "options": dict(m.options), "classifier": "classifier"}
        ensemble_path = run_path / "ensemble" / "ensemble.safetensors"
        save_ensemble(ensemble_path, ensemble, architecture, overwrite=True)
    seconds["stage3"] = time.perf_counter() - mark
    rows = _test_reports(source, stage2, ensemble, r.method)
    if ensemble is not None and source.has("val"):  # issue 20 hook (i20): (T1, T2) map + calibration plots
        write_ensemble_plots(source, ensemble, config.ensemble, run_path / "ensemble", log)
    notes = _notes(stage2, config, choice, key)
    title = f"{run_config.data.name}: {run_config.model.name} + {run_config.loss.name} base"
    report = write_report(rows, run_path / "report", title=title, notes=notes)
    seconds["total"] = time.perf_counter() - started
    return PipelineResult(run_path, rows, report, stage2, ensemble_path, seconds)


@torch.no_grad()
def _test_reports(source: FeatureSource, stage2: Stage2Result, ensemble: Any, method: str) -> dict:
    test = source.split("test")  # the first and only read of the test split
    scores = {"base": head_logits(source.original_head, test.features)}
    scores[PAPER_ROW.get(method, method)] = head_logits(stage2.heads["paper"].head, test.features)
    if "nolb" in stage2.heads:
        scores["nolb (val-tuned GML)"] = head_logits(stage2.heads["nolb"].head, test.features)
    if ensemble is not None:
        scores["ensemble"] = ensemble.forward_heads(test.features.float())
    for key, head in stage2.heads.items():
        if key not in ("paper", "nolb"):
            scores[PAPER_ROW[key]] = head_logits(head.head, test.features)
    return reports_from_scores(scores, test.labels, source.num_classes, train_counts=source.class_counts.numpy(),
                               class_names=list(getattr(source.data, "class_names", None) or []) or None)


def _notes(stage2: Stage2Result, config: Any, choice: Any, ensemble_key: str | None) -> list[str]:
    notes = []
    paper = stage2.heads["paper"].settings
    notes.append(f"paper head: {paper.method}, prior strength {paper.prior_strength}, lr {paper.lr}, "
                 f"{paper.epochs} epochs, {paper.sampler} sampling, init {paper.init}")
    if "nolb" in stage2.heads:
        nolb = stage2.heads["nolb"]
        notes.append(f"nolb head (chosen on validation): prior strength {nolb.settings.prior_strength}, "
                     f"lr {nolb.settings.lr}, {nolb.settings.sampler} sampling, best epoch {nolb.best_epoch} "
                     f"of {nolb.settings.epochs}")
    if "tau_norm" in stage2.heads:
        notes.append(f"tau-norm: tau {stage2.heads['tau_norm'].details['tau']} (chosen on validation)")
    if ensemble_key is not None:
        how = "chosen on validation" if choice is not None else "fixed"
        t1, t2 = (choice.t1, choice.t2) if choice is not None else (config.ensemble.t1, config.ensemble.t2)
        notes.append(f"ensemble: original head + {ensemble_key} head, T1 {t1}, T2 {t2} ({how}), "
                     f"{config.ensemble.space}-space average")
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
