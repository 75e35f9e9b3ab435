"""Stages 2 and 3 over one :class:`~nolb.retrain.feature_source.FeatureSource`.

Stage 2 (:func:`run_stage2`) trains the heads a run asks for, all on the same cached
features: the paper-exact head (``retrain.method`` with the ``retrain`` recipe; its own
report row, never tuned), the ``nolb`` head (GML chosen on validation, ``select_on_val``)
and the baselines (cRT, LWS, tau-norm) chosen by the same criterion, guard and budget
(:mod:`nolb.retrain.selection`).  Stage 3 (:func:`run_stage3`) builds the ensemble of the
original head and one stage-2 head, (T1, T2) chosen on validation by default, then keeps
the validated best of base, paper head, nolb head and ensemble as the run's final model
(:mod:`nolb.retrain.final_model`).  Neither stage reads the test split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from torch import nn

from nolb.config_stages import EnsembleConfig, RetrainConfig
from nolb.errors import NolbError
from nolb.io import save_safetensors, write_json
from nolb.retrain.ensemble import Ensemble, TemperatureChoice, select_temperatures
from nolb.retrain.ensemble_io import save_ensemble
from nolb.retrain.feature_source import FeatureSource
from nolb.retrain.final_model import FinalChoice, choose_final, write_final_model
from nolb.retrain.heads import TrainedHead, train_head
from nolb.retrain.scoring import Criterion, ValScore, head_logits, validation_score
from nolb.retrain.selection import baseline_candidates, nolb_candidates, select_head
from nolb.retrain.settings import HeadSettings

SCALE_METHODS = ("tau_norm", "lws")  # parametrised by a logit scale: ranked on arg-max recall
PAPER_ROW = {"gml": "GML (paper)", "bsce": "BSCE head", "ce": "CE head", "crt": "cRT", "lws": "LWS",
             "tau_norm": "tau-norm"}


@dataclass
class Stage2Result:
    """Stage-2 heads by key (``paper``, ``nolb``, ``crt``, ``lws``, ``tau_norm``) and the record."""

    heads: dict[str, TrainedHead] = field(default_factory=dict)
    record: dict = field(default_factory=dict)
    criterion: Criterion | None = None
    base_val: ValScore | None = None


def selection_criterion(source: FeatureSource, config: RetrainConfig) -> tuple[Criterion, ValScore | None]:
    """The criterion of every validation choice of a run, guarded by the base model's val accuracy."""
    base = None
    if source.has("val"):
        val = source.split("val")
        base = validation_score(head_logits(source.original_head, val.features), val.labels, source.num_classes)
    criterion = Criterion.named(config.select_criterion, source.num_classes, base, config.select_acc_tolerance)
    return criterion, base


def run_stage2(source: FeatureSource, config: RetrainConfig, out_dir: str | Path | None = None,
               log: Callable[[str], None] = print) -> Stage2Result:
    """Train the paper-exact head, the validation-selected ``nolb`` head and the baselines.

    Args:
        source: features of the frozen backbone (train and val only are read).
        config: the ``retrain`` section (validated).
        out_dir: where ``heads/<key>.safetensors`` and ``retrain.json`` go (None: nowhere).
        log: progress printer.

    Returns:
        A :class:`Stage2Result`.
    """
    started = time.perf_counter()
    if config.mode != "cached":
        raise NolbError("config key 'retrain.mode': stages 2-3 of a run use cached features; online mode is "
                        "for one head through nolb.retrain_classifier")
    needs_val = config.select_on_val or config.baselines
    if needs_val and not source.has("val"):
        key = "retrain.select_on_val" if config.select_on_val else "retrain.baselines"
        raise NolbError(f"config key {key!r}: the dataset has no validation split to choose on")
    train = source.split("train")
    val = source.split("val") if source.has("val") else None
    counts = source.class_counts
    criterion, base_val = selection_criterion(source, config)
    result = Stage2Result(criterion=criterion, base_val=base_val)
    paper = HeadSettings.from_config(config)
    log(f"stage 2: features ready ({train.features.shape[0]} training rows, reused: {source.reused})")
    result.heads["paper"] = train_head(paper, train, counts, source.original_head, val)
    result.heads["paper"].details["budget"] = "untuned (the paper's recipe)"
    grids = {}
    if config.select_on_val:
        grids["nolb"] = nolb_candidates(paper, config)
    for name in config.baselines:
        grids[name] = baseline_candidates(name, paper, config)
    for key, candidates in grids.items():
        # tau-norm's tau and LWS's scales set the logit scale, which the soft recall rewards or
        # punishes by itself: they are ranked on the arg-max recall (same guard), like the final model.
        rule = replace(criterion, soft=False) if key in SCALE_METHODS else criterion
        result.heads[key] = select_head(candidates, train, val, counts, source.original_head, rule,
                                        desc=f"stage 2: {key} head").best
        if key == "tau_norm":
            result.heads[key].details["budget"] = f"{len(result.heads[key].details['tau_table'])} tau values"
    if "nolb" in result.heads:
        chosen = result.heads["nolb"]
        log(f"stage 2: nolb head chosen on val: tau={chosen.settings.prior_strength}, lr={chosen.settings.lr}, "
            f"sampler={chosen.settings.sampler}, epoch={chosen.best_epoch}")
    result.record = {
        "base_val": base_val.to_dict() if base_val else None,
        "criterion": criterion.describe(),
        "heads": {key: head.describe() for key, head in result.heads.items()},
        "features": {"views": source.views, "reused": dict(source.reused), "shift_bn": source.shift_bn,
                     "extract_dtype": source.extract_dtype},
        "seconds": time.perf_counter() - started,
    }
    if out_dir is not None:
        save_stage2(Path(out_dir), result)
    return result


def save_stage2(out_dir: Path, result: Stage2Result) -> None:
    """``heads/<key>.safetensors`` (``weight``/``bias``, settings in the metadata), replacing any
    head of an earlier stage 2 there, then ``retrain.json`` (last: its presence means "finished")."""
    for stale in (out_dir / "heads").glob("*.safetensors"):
        if stale.stem not in result.heads:
            stale.unlink()
    for key, trained in result.heads.items():
        save_safetensors(out_dir / "heads" / f"{key}.safetensors",
                         {"weight": trained.head.weight, "bias": trained.head.bias},
                         metadata={"settings": str(trained.settings.to_dict())})
    write_json(out_dir / "retrain.json", result.record)


@dataclass
class Stage3Result:
    """The ensemble (None when disabled), its temperatures, and the run's final-model choice."""

    ensemble: Ensemble | None
    head_key: str | None
    temperatures: TemperatureChoice | None
    final: FinalChoice
    ensemble_path: Path | None = None
    final_path: Path | None = None


def run_stage3(source: FeatureSource, heads: dict[str, nn.Module], config: EnsembleConfig, criterion: Criterion,
               *, run_dir: Path | None = None, architecture: dict | None = None,
               checkpoint: str = "checkpoints/best.json") -> Stage3Result:
    """Build the ensemble of the original head and ``heads[config.head]`` and choose the final model.

    Args:
        source: the frozen backbone (only its validation split is read).
        heads: stage-2 heads by key (``paper``, ``nolb``, baselines, or a file's path).
        config: the ``ensemble`` section; a ``head`` that ``heads`` lacks falls back to ``paper``.
        criterion: the run's selection rule (its accuracy guard decides the final model too).
        run_dir: when given, ``ensemble/ensemble.safetensors`` (with ``architecture``) and
            ``final_model.json`` are written there.
        architecture: the model description stored with the ensemble.
        checkpoint: the stage-1 checkpoint named in ``final_model.json``.
    """
    ensemble, key, choice = None, None, None
    if config.enabled:
        key = config.head if config.head in heads else "paper"
        t1, t2 = config.t1, config.t2
        if config.select_temperatures:
            if not source.has("val"):
                raise NolbError("config key 'ensemble.select_temperatures': the dataset has no validation split")
            val = source.split("val")
            choice = select_temperatures(head_logits(source.original_head, val.features),
                                         head_logits(heads[key], val.features), val.labels, source.num_classes,
                                         config.temperature_grid, config.space)
            t1, t2 = choice.t1, choice.t2
        ensemble = Ensemble(source.backbone, source.original_head, heads[key], t1, t2, config.space).eval()
    final = _final_choice(source, heads, ensemble, criterion)
    result = Stage3Result(ensemble, key, choice, final)
    if run_dir is not None:
        if ensemble is not None:
            result.ensemble_path = Path(run_dir) / "ensemble" / "ensemble.safetensors"
            save_ensemble(result.ensemble_path, ensemble, architecture or {}, overwrite=True)
        result.final_path = write_final_model(Path(run_dir), final, checkpoint)
    return result


def _final_choice(source: FeatureSource, heads: dict[str, nn.Module], ensemble: Ensemble | None,
                  criterion: Criterion) -> FinalChoice:
    if not source.has("val"):
        name = "ensemble" if ensemble is not None else ("nolb" if "nolb" in heads else "paper")
        return FinalChoice(name, "no validation split: the last stage built is kept", "none")
    val = source.split("val")
    scores = {"base": head_logits(source.original_head, val.features)}
    scores.update({key: head_logits(heads[key], val.features) for key in ("paper", "nolb") if key in heads})
    if ensemble is not None:
        scores["ensemble"] = ensemble.forward_heads(val.features.float())
    return choose_final(scores, val.labels, criterion)
