"""Config sections for stage 2 (classifier re-training) and stage 3 (the ensemble).

Plain dataclasses: ``nolb.config`` nests them in the top-level run config and validates
keys against their fields.  Owned by the stage-2/3 code; extend fields here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RETRAIN_METHODS = ("gml", "bsce", "ce", "crt", "lws", "tau_norm")
RETRAIN_MODES = ("cached", "online")
HEAD_INITS = ("original", "fresh")
HEAD_SAMPLERS = ("instance", "class_balanced", "sqrt")
BASELINE_METHODS = ("crt", "lws", "tau_norm")
ENSEMBLE_SPACES = ("prob", "log")


@dataclass
class RetrainConfig:
    """Stage 2: train a new linear head on the frozen backbone (METHOD.md section 4).

    ``method``/``prior_strength``/``lr``/``epochs``/``sampler`` describe the paper-exact
    GML head (own report row).  With ``select_on_val`` the pipeline also trains the
    "nolb" head whose prior strength, lr, sampler and epoch are chosen on the
    validation split among the ``select_*`` candidates.
    """

    method: str = "gml"  # gml | bsce | ce | crt | lws | tau_norm
    mode: str = "cached"  # cached (features computed once, K views) | online
    views: int = 4  # augmented views of the training set in cached mode
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.02
    weight_decay: float = 2e-4
    momentum: float = 0.9
    prior_strength: float = 1.0  # tau in softmax(z + tau log n); 1 = the paper's GML
    init: str = "original"  # original | fresh
    sampler: str = "instance"
    shift_bn: bool = False  # MiSLAS: re-estimate BatchNorm statistics before stage 2
    select_on_val: bool = True  # choose tau / lr / epochs on the validation split
    select_prior_strengths: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    select_lrs: list[float] = field(default_factory=lambda: [0.02, 0.1])
    select_samplers: list[str] = field(default_factory=lambda: ["instance", "class_balanced"])
    select_acc_tolerance: float = 0.01  # keep val accuracy within this of the base's
    select_criterion: str = "soft_hm"  # soft_hm (HM of the soft per-class val recall) | hm (arg-max)
    matmul_dtype: str = "float32"  # bfloat16: ~3x faster head training on AMX / AVX-512-BF16 CPUs
    baselines: list[str] = field(default_factory=list)  # e.g. ["crt", "lws", "tau_norm"]
    seed: int = 0


@dataclass
class EnsembleConfig:
    """Stage 3: p = (softmax(z1 / T1) + softmax(z2 / T2)) / 2 (METHOD.md section 5)."""

    enabled: bool = True
    t1: float = 1.0
    t2: float = 1.0
    select_temperatures: bool = False  # grid search on the validation split (never test)
    temperature_grid: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    space: str = "prob"  # prob | log
    head: str = "nolb"  # which stage-2 head joins the original one: nolb | gml


def check_stage_configs(retrain: RetrainConfig, ensemble: EnsembleConfig) -> None:
    """Reject stage-2/3 settings that cannot work, before any training starts.

    Raises:
        NolbError: naming the config key, e.g. ``config key 'retrain.method': ...``.
    """
    from nolb.errors import NolbError

    def check(ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise NolbError(f"config key {key!r} {problem}")

    check(retrain.method in RETRAIN_METHODS, "retrain.method", f"must be one of {', '.join(RETRAIN_METHODS)}, got {retrain.method!r}")
    check(retrain.mode in RETRAIN_MODES, "retrain.mode", f"must be one of {', '.join(RETRAIN_MODES)}, got {retrain.mode!r}")
    check(retrain.init in HEAD_INITS, "retrain.init", f"must be one of {', '.join(HEAD_INITS)}, got {retrain.init!r}")
    for key, values, allowed in (("retrain.sampler", [retrain.sampler], HEAD_SAMPLERS),
                                 ("retrain.select_samplers", retrain.select_samplers, HEAD_SAMPLERS),
                                 ("retrain.baselines", retrain.baselines, BASELINE_METHODS)):
        for value in values:
            check(value in allowed, key, f"must be among {', '.join(allowed)}, got {value!r}")
    check(retrain.prior_strength >= 0, "retrain.prior_strength", f"must be >= 0, got {retrain.prior_strength}")
    check(all(0 <= t <= 1 for t in retrain.select_prior_strengths) and bool(retrain.select_prior_strengths),
          "retrain.select_prior_strengths", f"must be a non-empty list in [0, 1], got {retrain.select_prior_strengths}")
    check(all(lr > 0 for lr in retrain.select_lrs) and bool(retrain.select_lrs), "retrain.select_lrs",
          f"must be a non-empty list of positive values, got {retrain.select_lrs}")
    check(retrain.select_acc_tolerance >= 0, "retrain.select_acc_tolerance", "must be >= 0")
    check(retrain.matmul_dtype in ("float32", "bfloat16"), "retrain.matmul_dtype",
          f"must be float32 or bfloat16, got {retrain.matmul_dtype!r}")
    check(retrain.select_criterion in ("soft_hm", "hm"), "retrain.select_criterion",
          f"must be one of soft_hm, hm, got {retrain.select_criterion!r}")
    check(ensemble.space in ENSEMBLE_SPACES, "ensemble.space", f"must be one of {', '.join(ENSEMBLE_SPACES)}, got {ensemble.space!r}")
    check(ensemble.head in ("nolb", "paper"), "ensemble.head", f"must be 'nolb' or 'paper', got {ensemble.head!r}")
    check(all(t > 0 for t in ensemble.temperature_grid) and bool(ensemble.temperature_grid),
          "ensemble.temperature_grid", f"must be a non-empty list of positive values, got {ensemble.temperature_grid}")
