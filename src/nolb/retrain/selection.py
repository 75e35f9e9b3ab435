"""Choose a stage-2 head on the validation split: a loop over candidates and one criterion.

:func:`select_head` trains every candidate :class:`~nolb.retrain.settings.HeadSettings`
with :func:`~nolb.retrain.heads.train_head` (early stopping by the criterion, which also
chooses the epoch) and keeps the one the :class:`~nolb.retrain.scoring.Criterion` ranks
best (ties: the earlier candidate).  The criterion is (1) feasibility: validation accuracy
at least the base model's minus ``retrain.select_acc_tolerance``; (2) HM, (3) AM of the
per-class validation recall, soft (``soft_hm``, the default: the mean softmax probability of
the true class over a class's validation images, a smoother estimate than the arg-max
recall, which moves in steps of 1 % with 100 images per class) or arg-max (``hm``).

The candidate grids (:func:`nolb_candidates`, :func:`baseline_candidates`) give the nolb
head and the trained baselines the same budget: the nolb head tries every (prior strength,
lr, sampler) of the ``select_*`` lists; cRT and LWS, which have no prior strength, try as
many lrs (a geometric grid spanning ``select_lrs``; for LWS up to ``LWS_LR_REACH`` times its
largest value, since per-class scales barely move at a linear head's lr in 10 epochs) with
the same samplers.  tau-norm and LWS are ranked on the arg-max recall (their parameter is a
logit scale, which the soft recall would judge by itself; see ``stages.SCALE_METHODS``).  Only
training and validation features are read here, never the test split.  The defaults (criterion,
guard, grids) were decided on Digits-LT, a dataset no quality claim reports: docs/QUALITY.md,
"How the selection defaults were decided" (``python experiments/rule_development.py all``,
``results/rules/``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import product

import torch
from torch import nn

from nolb.config_stages import RetrainConfig
from nolb.errors import NolbError
from nolb.progress import Progress
from nolb.retrain.features import FeatureSplit
from nolb.retrain.heads import TrainedHead, train_head
from nolb.retrain.scoring import Criterion
from nolb.retrain.settings import HeadSettings, baseline_settings

LWS_LR_REACH = 10.0


@dataclass
class Selection:
    """The chosen head and the table of every candidate's validation scores."""

    best: TrainedHead
    table: list[dict] = field(default_factory=list)


def nolb_candidates(base: HeadSettings, config: RetrainConfig) -> list[HeadSettings]:
    """GML heads over every (prior strength, lr, sampler) of the ``select_*`` lists."""
    grid = product(config.select_prior_strengths, config.select_lrs, config.select_samplers)
    return [replace(base, method="gml", prior_strength=float(tau), lr=float(lr), sampler=sampler,
                    loss_options=dict(config.loss_options))
            for tau, lr, sampler in grid]


def baseline_candidates(method: str, base: HeadSettings, config: RetrainConfig) -> list[HeadSettings]:
    """cRT / LWS over as many candidates as the nolb head: lrs x samplers (one for tau-norm,
    which chooses its tau on validation by the same criterion)."""
    settings = baseline_settings(method, base)
    if method == "tau_norm":
        return [settings]
    count = len(config.select_prior_strengths) * len(config.select_lrs)
    lrs = list(config.select_lrs)
    if method == "lws":  # one scale per class moves slowly: its grid reaches LWS_LR_REACH x further
        lrs = [min(lrs), max(lrs) * LWS_LR_REACH]
    return [replace(settings, lr=lr, sampler=sampler) for lr, sampler in product(spread(lrs, count), config.select_samplers)]


def spread(values: list[float], count: int) -> list[float]:
    """``count`` values spaced geometrically from min to max of ``values`` (``values`` if it
    already has that many, or if min equals max)."""
    low, high = min(values), max(values)
    if len(values) >= count or low == high:
        return [float(v) for v in values]
    ratio = math.log(high / low) / (count - 1)
    return [float(f"{low * math.exp(ratio * i):.3g}") for i in range(count)]


def select_head(
    candidates: list[HeadSettings],
    train: FeatureSplit,
    val: FeatureSplit,
    class_counts: torch.Tensor,
    original_head: nn.Module | None,
    criterion: Criterion,
    *,
    desc: str = "selection",
) -> Selection:
    """Train every candidate and keep the best by ``criterion`` on ``val``.

    Args:
        candidates: the settings to try (in tie-breaking order).
        train: pooled training features.
        val: validation features (the only data the choice sees).
        class_counts: (C,) training counts.
        original_head: the stage-1 classifier (initialisation, LWS, tau-norm).
        criterion: the selection rule (also chooses each candidate's epoch).
        desc: label of the progress display.

    Returns:
        A :class:`Selection` whose table has one row per candidate.
    """
    if not candidates:
        raise NolbError("retrain.select_*: the candidate grid is empty")
    best_key, best, table = None, None, []
    with Progress(len(candidates), desc=desc, unit="candidate") as bar:
        for index, settings in enumerate(candidates):
            trained = train_head(settings, train, class_counts, original_head, val, criterion=criterion)
            key = criterion.head_key(trained.head, val.features, val.labels)
            table.append({"prior_strength": settings.prior_strength, "lr": settings.lr, "sampler": settings.sampler,
                          "best_epoch": trained.best_epoch, "feasible": bool(key[0]), **trained.val_score.to_dict(),
                          "rank_hm": key[1], "rank_am": key[2]})
            if best_key is None or (*key, -index) > best_key:
                best_key, best = (*key, -index), trained
            bar.update(1, best=f"{criterion.name} {best_key[1]:.4f}")
    best.details["selection_table"] = table
    best.details["selection_criterion"] = criterion.describe()
    best.details["budget"] = f"{len(candidates)} candidates x {best.settings.epochs} epochs"
    return Selection(best=best, table=table)
