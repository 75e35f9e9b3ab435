"""Choose the stage-2 head's settings on the validation split (the "nolb" head).

Candidates are the product of prior strengths tau in [0, 1] (GML's
``softmax(z + tau log n)``), learning rates and samplers; each is trained once with
early stopping on validation (the best epoch is kept), which also chooses the epoch
count.  The winner maximises, in order:

1. feasibility: validation accuracy >= the base model's minus ``acc_tolerance``
   (keeps Acc near the base's, the goal of the default pipeline);
2. validation HM;  3. validation AM;  4. the earlier candidate (list order).

Only the training and validation features are used; the test split is never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import product
from typing import Sequence

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.retrain.features import FeatureSplit
from nolb.retrain.head_methods import HeadSettings, TrainedHead, train_head
from nolb.retrain.scoring import ValScore


@dataclass
class Selection:
    """The chosen head and the table of every candidate's validation scores."""

    best: TrainedHead
    table: list[dict] = field(default_factory=list)


def select_head(
    base: HeadSettings,
    train: FeatureSplit,
    val: FeatureSplit,
    class_counts: torch.Tensor,
    original_head: nn.Module | None,
    *,
    prior_strengths: Sequence[float] = (0.0, 0.5, 1.0),
    lrs: Sequence[float] = (0.02, 0.1),
    samplers: Sequence[str] = ("instance", "class_balanced"),
    base_val_score: ValScore | None = None,
    acc_tolerance: float = 0.01,
) -> Selection:
    """Train every candidate GML head and keep the best on validation.

    Args:
        base: settings shared by the candidates (epochs is the maximum; batch size, wd...).
        train: pooled training features.
        val: validation features.
        class_counts: (C,) training counts.
        original_head: the stage-1 classifier (initialisation).
        prior_strengths: candidate tau values, each in [0, 1].
        lrs: candidate peak learning rates.
        samplers: candidate samplers.
        base_val_score: the original head's validation score (for the accuracy constraint).
        acc_tolerance: allowed validation-accuracy drop (a fraction, 0.01 = 1 point).

    Returns:
        A :class:`Selection`.
    """
    for tau in prior_strengths:
        if not 0.0 <= tau <= 1.0:
            raise NolbError(f"retrain.select_prior_strengths: {tau} is outside [0, 1]")
    if not (prior_strengths and lrs and samplers):
        raise NolbError("retrain.select_*: every candidate list needs at least one value")
    floor = base_val_score.accuracy - acc_tolerance if base_val_score is not None else -1.0
    best_key, best, table = None, None, []
    for index, (tau, lr, sampler) in enumerate(product(prior_strengths, lrs, samplers)):
        settings = replace(base, method="gml", prior_strength=float(tau), lr=float(lr), sampler=sampler)
        trained = train_head(settings, train, class_counts, original_head, val, early_stopping=True)
        score = trained.val_score
        feasible = score.accuracy >= floor
        table.append({
            "prior_strength": float(tau), "lr": float(lr), "sampler": sampler,
            "best_epoch": trained.best_epoch, "feasible": feasible, **score.to_dict(),
        })
        key = (feasible, score.hm, score.am, -index)
        if best_key is None or key > best_key:
            best_key, best = key, trained
    best.details["selection_table"] = table
    return Selection(best=best, table=table)


def select_baseline_lr(
    settings: HeadSettings,
    train: FeatureSplit,
    val: FeatureSplit,
    class_counts: torch.Tensor,
    original_head: nn.Module | None,
    lrs: Sequence[float],
) -> Selection:
    """Tune a trained baseline (cRT, LWS) as fairly as the nolb head: the lr among ``lrs``
    and the epoch by early stopping on validation HM (ties AM, then the earlier lr)."""
    best_key, best, table = None, None, []
    for index, lr in enumerate(lrs):
        trained = train_head(replace(settings, lr=float(lr)), train, class_counts, original_head, val,
                             early_stopping=True)
        table.append({"lr": float(lr), "best_epoch": trained.best_epoch, **trained.val_score.to_dict()})
        key = (trained.val_score.hm, trained.val_score.am, -index)
        if best_key is None or key > best_key:
            best_key, best = key, trained
    best.details["selection_table"] = table
    return Selection(best=best, table=table)
