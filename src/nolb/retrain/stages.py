"""Stages 2 and 3 over one :class:`~nolb.retrain.feature_source.FeatureSource`.

Stage 2 trains the heads a run asks for, all on the same cached features:

* the paper-exact head (``retrain.method`` with the ``retrain`` recipe: for GML,
  prior strength 1, lr 0.02, 10 epochs, instance sampling) -- its own report row;
* the ``nolb`` head: GML whose prior strength, lr, sampler and epoch are chosen on the
  validation split (``retrain.select_on_val``);
* the baselines (``retrain.baselines``: cRT, LWS, tau-norm), tuned as fairly: with
  ``select_on_val`` cRT and LWS choose their lr among ``select_lrs`` and their epoch on
  validation, tau-norm its tau.

Stage 3 builds the ensemble of the original head and one stage-2 head, with the
temperatures chosen on the validation split when asked.  Neither stage reads the test split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from nolb.errors import NolbError
from nolb.io import save_safetensors, write_json
from nolb.retrain.config import BASELINE_METHODS, EnsembleConfig, RetrainConfig
from nolb.retrain.ensemble import Ensemble, TemperatureChoice, select_temperatures
from nolb.retrain.feature_source import FeatureSource
from nolb.retrain.head_methods import HeadSettings, TrainedHead, baseline_settings, train_head
from nolb.retrain.scoring import head_logits, validation_score
from nolb.retrain.selection import select_baseline_lr, select_head

PAPER_ROW = {"gml": "GML (paper)", "bsce": "BSCE head", "ce": "CE head", "crt": "cRT", "lws": "LWS",
             "tau_norm": "tau-norm"}


@dataclass
class Stage2Result:
    """Stage-2 heads by key (``paper``, ``nolb``, ``crt``, ``lws``, ``tau_norm``) and the record."""

    heads: dict[str, TrainedHead] = field(default_factory=dict)
    record: dict = field(default_factory=dict)


def settings_from_config(config: RetrainConfig) -> HeadSettings:
    return HeadSettings(
        method=config.method, prior_strength=config.prior_strength, lr=config.lr, epochs=config.epochs,
        batch_size=config.batch_size, weight_decay=config.weight_decay, momentum=config.momentum,
        sampler=config.sampler, init=config.init, seed=config.seed, matmul_dtype=config.matmul_dtype,
    )


def run_stage2(source: FeatureSource, config: RetrainConfig, out_dir: str | Path | None = None,
               log=print) -> Stage2Result:
    """Train the paper-exact head, the validation-selected ``nolb`` head and the baselines.

    Args:
        source: features of the frozen backbone (train and val only are read).
        config: the ``retrain`` section.
        out_dir: where ``heads/<key>.safetensors`` and ``retrain.json`` go (None: nowhere).
        log: progress printer.

    Returns:
        A :class:`Stage2Result`.
    """
    for name in config.baselines:
        if name not in BASELINE_METHODS:
            raise NolbError(f"config key 'retrain.baselines': unknown baseline {name!r}, expected {BASELINE_METHODS}")
    if config.mode != "cached":
        raise NolbError("config key 'retrain.mode': the pipeline runs stage 2 on cached features; "
                        "use 'nolb retrain --mode online' for the online variant")
    started = time.perf_counter()
    train = source.split("train")
    val = source.split("val") if source.has("val") else None
    counts = source.class_counts
    base = settings_from_config(config)
    result = Stage2Result()
    base_score = None
    if val is not None:
        base_score = validation_score(head_logits(source.original_head, val.features), val.labels, source.num_classes)
    log(f"stage 2: features ready ({train.features.shape[0]} training rows, reused: {source.reused})")
    result.heads["paper"] = train_head(base, train, counts, source.original_head, val)
    if config.select_on_val:
        if val is None:
            raise NolbError("config key 'retrain.select_on_val': the dataset has no validation split")
        selection = select_head(
            base, train, val, counts, source.original_head,
            prior_strengths=config.select_prior_strengths, lrs=config.select_lrs,
            samplers=config.select_samplers, base_val_score=base_score, acc_tolerance=config.select_acc_tolerance,
            criterion=config.select_criterion,
        )
        result.heads["nolb"] = selection.best
        chosen = selection.best.settings
        log(f"stage 2: nolb head chosen on val: tau={chosen.prior_strength}, lr={chosen.lr}, "
            f"sampler={chosen.sampler}, epoch={selection.best.best_epoch}")
    for name in config.baselines:
        settings = baseline_settings(name, base)
        if name != "tau_norm" and config.select_on_val and val is not None:
            result.heads[name] = select_baseline_lr(settings, train, val, counts, source.original_head,
                                                    config.select_lrs).best
        else:
            result.heads[name] = train_head(settings, train, counts, source.original_head, val)
    result.record = {
        "base_val": base_score.to_dict() if base_score else None,
        "heads": {key: head.describe() for key, head in result.heads.items()},
        "features": {"views": source.views, "reused": dict(source.reused), "shift_bn": source.shift_bn},
        "seconds": time.perf_counter() - started,
    }
    if out_dir is not None:
        out = Path(out_dir)
        for key, head in result.heads.items():
            save_safetensors(out / "heads" / f"{key}.safetensors", {"weight": head.head.weight, "bias": head.head.bias},
                             metadata={"settings": str(head.settings.to_dict())})
        write_json(out / "retrain.json", result.record)
    return result


def run_stage3(source: FeatureSource, new_head: nn.Module, config: EnsembleConfig) -> tuple[Ensemble, TemperatureChoice | None]:
    """The ensemble of the original head and ``new_head``; (T1, T2) chosen on val if asked."""
    choice = None
    t1, t2 = config.t1, config.t2
    if config.select_temperatures:
        if not source.has("val"):
            raise NolbError("config key 'ensemble.select_temperatures': the dataset has no validation split")
        val = source.split("val")
        choice = select_temperatures(head_logits(source.original_head, val.features), head_logits(new_head, val.features),
                                     val.labels, source.num_classes, config.temperature_grid, config.space)
        t1, t2 = choice.t1, choice.t2
    return Ensemble(source.backbone, source.original_head, new_head, t1, t2, config.space).eval(), choice
