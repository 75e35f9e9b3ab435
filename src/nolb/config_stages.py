"""Config sections of stage 2 (``retrain``) and stage 3 (``ensemble``), and their checks.

Plain dataclasses nested in :class:`nolb.config.Config`; ``nolb.config`` validates every key
of every section, these included, before any command does work.  This module imports only
``nolb.errors`` (the config floor never reaches up into ``nolb.retrain``).  The per-dataset
values of METHOD.md section 4 (ImageNet-LT / Places-LT / iNat: lr 0.005, batch 256, wd 5e-4)
live in those datasets' recipes; the defaults here are the CIFAR recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

RETRAIN_METHODS = ("gml", "bsce", "ce", "crt", "lws", "tau_norm")
BASELINE_METHODS = ("crt", "lws", "tau_norm")
RETRAIN_MODES = ("cached", "online")
HEAD_INITS = ("original", "fresh")
HEAD_SAMPLERS = ("instance", "class_balanced", "sqrt")
MATMUL_DTYPES = ("auto", "float32", "bfloat16")
EXTRACT_DTYPES = MATMUL_DTYPES
SELECTION_CRITERIA = ("soft_hm", "hm")
ENSEMBLE_SPACES = ("prob", "log")
HEAD_KEYS = ("nolb", "paper", *BASELINE_METHODS)  # stage-2 heads a run can write
FINAL_CANDIDATES = ("base", "paper", "nolb", "ensemble")


@dataclass
class RetrainConfig:
    """Stage 2: train a new linear head on the frozen backbone (METHOD.md section 4).

    ``method``/``prior_strength``/``loss_options``/``lr``/``epochs``/``sampler`` describe the
    paper-exact head (its own report row).  With ``select_on_val`` the pipeline also trains
    the "nolb" head whose prior strength, lr, sampler and epoch are chosen on the validation
    split among the ``select_*`` candidates; the ``baselines`` are chosen by the same rule.
    """

    method: str = "gml"  # gml | bsce | ce | crt | lws | tau_norm
    mode: str = "cached"  # cached (features computed once, K views) | online
    views: int = 1  # augmented views of the training set in cached mode (1: measured, docs/PERFORMANCE.md)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.02
    weight_decay: float = 2e-4
    momentum: float = 0.9
    prior_strength: float = 1.0  # tau in softmax(z + tau log n); 1 = the paper's GML
    loss_options: dict = field(default_factory=dict)  # every GML head: {aggregate: log_then_mean, power: 2.0}
    init: str = "original"  # original | fresh
    sampler: str = "instance"
    shift_bn: bool = False  # MiSLAS: re-estimate BatchNorm statistics before stage 2
    select_on_val: bool = True  # choose tau / lr / sampler / epoch on the validation split
    select_prior_strengths: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    select_lrs: list[float] = field(default_factory=lambda: [0.02, 0.1])
    select_samplers: list[str] = field(default_factory=lambda: ["instance", "class_balanced"])
    select_acc_tolerance: float = 0.01  # keep val accuracy within this of the base's
    select_criterion: str = "soft_hm"  # soft_hm (HM of the soft per-class val recall) | hm (arg-max)
    matmul_dtype: str = "auto"  # auto: bfloat16 for large heads on CPUs with native bf16, else float32
    extract_dtype: str = "auto"  # backbone on the cached training views: auto = bfloat16 on CPUs with native bf16
    baselines: list[str] = field(default_factory=list)  # e.g. [crt, lws, tau_norm]
    seed: int = 0


@dataclass
class EnsembleConfig:
    """Stage 3: p = (softmax(z1 / T1) + softmax(z2 / T2)) / 2 (METHOD.md section 5).

    With ``select_temperatures`` (the default) (T1, T2) are chosen on the validation split;
    ``t1``/``t2`` are used only when it is false.  ``head`` names the stage-2 head that joins
    the original one (a key such as ``nolb``, or a ``.safetensors`` file).
    """

    enabled: bool = True
    t1: float = 1.0
    t2: float = 1.0
    select_temperatures: bool = True  # grid search on the validation split (never test)
    temperature_grid: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    space: str = "prob"  # prob | log
    head: str = "nolb"  # nolb | paper | crt | lws | tau_norm | path/to/head.safetensors


def check_stage_sections(retrain: RetrainConfig, ensemble: EnsembleConfig,
                         check: Callable[[bool, str, str], None], gml_options: tuple[str, ...]) -> None:
    """Every rule on the ``retrain`` and ``ensemble`` keys; ``check(ok, key, problem)`` raises.

    Args:
        retrain, ensemble: the two sections.
        check: raises ``NolbError`` naming ``key`` (and the value, file and line) when not ok.
        gml_options: the option names the GML loss accepts (for ``retrain.loss_options``).
    """
    r, e = retrain, ensemble

    def one_of(key: str, value, allowed: tuple) -> None:
        check(value in allowed, key, f"must be one of {', '.join(allowed)}")

    one_of("retrain.method", r.method, RETRAIN_METHODS)
    one_of("retrain.mode", r.mode, RETRAIN_MODES)
    one_of("retrain.init", r.init, HEAD_INITS)
    one_of("retrain.sampler", r.sampler, HEAD_SAMPLERS)
    one_of("retrain.matmul_dtype", r.matmul_dtype, MATMUL_DTYPES)
    one_of("retrain.extract_dtype", r.extract_dtype, EXTRACT_DTYPES)
    one_of("retrain.select_criterion", r.select_criterion, SELECTION_CRITERIA)
    check(r.epochs >= 1, "retrain.epochs", "must be >= 1")
    check(r.batch_size >= 1, "retrain.batch_size", "must be >= 1")
    check(_positive(r.lr), "retrain.lr", "must be > 0")
    check(r.views >= 1, "retrain.views", "must be >= 1")
    check(r.weight_decay >= 0, "retrain.weight_decay", "must be >= 0")
    check(0 <= r.momentum < 1, "retrain.momentum", "must be in [0, 1)")
    check(math.isfinite(r.prior_strength) and r.prior_strength >= 0, "retrain.prior_strength", "must be >= 0")
    for option in r.loss_options:
        check(option in gml_options and option != "prior_strength", "retrain.loss_options",
              f"option {option!r} is not a GML option (accepted: aggregate, power; the prior strength is "
              "retrain.prior_strength)")
    check(bool(r.select_samplers) and all(s in HEAD_SAMPLERS for s in r.select_samplers),
          "retrain.select_samplers", f"must be a non-empty list among {', '.join(HEAD_SAMPLERS)}")
    check(bool(r.baselines is not None) and all(b in BASELINE_METHODS for b in r.baselines),
          "retrain.baselines", f"must be a list among {', '.join(BASELINE_METHODS)}")
    check(bool(r.select_prior_strengths) and all(0 <= t <= 1 for t in r.select_prior_strengths),
          "retrain.select_prior_strengths", "must be a non-empty list in [0, 1]")
    check(bool(r.select_lrs) and all(_positive(lr) for lr in r.select_lrs), "retrain.select_lrs",
          "must be a non-empty list of positive values")
    check(r.select_acc_tolerance >= 0, "retrain.select_acc_tolerance", "must be >= 0")
    check(not (r.mode == "online" and r.select_on_val), "retrain.mode",
          "online trains one head; the validation selection runs on cached features (set "
          "retrain.select_on_val=false or retrain.mode=cached)")
    check(not (r.mode == "online" and r.baselines), "retrain.mode",
          "online trains one head; baselines run on cached features (set retrain.baselines=[])")
    check(_positive(e.t1), "ensemble.t1", "must be a positive finite number")
    check(_positive(e.t2), "ensemble.t2", "must be a positive finite number")
    one_of("ensemble.space", e.space, ENSEMBLE_SPACES)
    check(bool(e.temperature_grid) and all(_positive(t) for t in e.temperature_grid), "ensemble.temperature_grid",
          "must be a non-empty list of positive values")
    check(e.head in HEAD_KEYS or e.head.endswith(".safetensors"), "ensemble.head",
          f"must be one of {', '.join(HEAD_KEYS)} or a .safetensors file")


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0
