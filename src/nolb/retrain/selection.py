"""Choose the stage-2 head's settings on the validation split (the "nolb" head).

Candidates are the product of prior strengths tau in [0, 1] (GML's
``softmax(z + tau log n)``), learning rates and samplers; each is trained once with
early stopping on validation (the best epoch is kept), which also chooses the epoch
count.  The winner (and each candidate's epoch) maximises, in order:

1. feasibility: validation accuracy >= the base model's minus ``acc_tolerance``
   (keeps Acc near the base's, the goal of the default pipeline);
2. the validation HM;  3. the validation AM;  4. the earlier candidate (list order).

``criterion="soft_hm"`` (the default) computes HM and AM of the *soft* per-class recall
(the mean softmax probability of the true class over a class's validation images) instead
of the arg-max recall.  With 100 validation images per class the arg-max recall moves in
steps of 1 % and its noise (about 5 points per class) makes heads that differ by less than
a point indistinguishable; the soft recall is a smoother estimate.  Measured on
Fashion-MNIST-LT (docs/QUALITY.md): choosing on the soft HM gave the same test HM as
choosing on a 5x larger split and 5-10 points more lowest recall than the arg-max HM.
``criterion="hm"`` is the arg-max version (feasibility always uses arg-max accuracy).

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
from nolb.retrain.head_methods import HeadSettings, TrainedHead, _loss_for, train_head
from nolb.retrain.head_training import fit_head, linear_head_from
from nolb.retrain.scoring import ValScore, head_logits, validation_score

SELECTION_CRITERIA = ("soft_hm", "hm")


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
    criterion: str = "soft_hm",
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
        criterion: ``"soft_hm"`` (HM of the soft per-class recall) or ``"hm"`` (arg-max recall).

    Returns:
        A :class:`Selection`.
    """
    for tau in prior_strengths:
        if not 0.0 <= tau <= 1.0:
            raise NolbError(f"retrain.select_prior_strengths: {tau} is outside [0, 1]")
    if not (prior_strengths and lrs and samplers):
        raise NolbError("retrain.select_*: every candidate list needs at least one value")
    if criterion not in SELECTION_CRITERIA:
        raise NolbError(f"retrain selection criterion: {criterion!r}, expected one of {SELECTION_CRITERIA}")
    floor = base_val_score.accuracy - acc_tolerance if base_val_score is not None else -1.0
    best_key, best, table = None, None, []
    for index, (tau, lr, sampler) in enumerate(product(prior_strengths, lrs, samplers)):
        settings = replace(base, method="gml", prior_strength=float(tau), lr=float(lr), sampler=sampler)
        if criterion == "hm":
            trained = train_head(settings, train, class_counts, original_head, val, early_stopping=True)
            extra, ranking = {}, (trained.val_score.hm, trained.val_score.am)
        else:
            trained = _train_on_soft_hm(settings, train, val, class_counts, original_head, floor)
            soft_hm, soft_am = soft_scores(head_logits(trained.head, val.features), val.labels, int(class_counts.numel()))
            extra, ranking = {"soft_hm": soft_hm, "soft_am": soft_am}, (soft_hm, soft_am)
        score = trained.val_score
        feasible = score.accuracy >= floor
        table.append({
            "prior_strength": float(tau), "lr": float(lr), "sampler": sampler,
            "best_epoch": trained.best_epoch, "feasible": feasible, **score.to_dict(), **extra,
        })
        key = (feasible, *ranking, -index)
        if best_key is None or key > best_key:
            best_key, best = key, trained
    best.details["selection_table"] = table
    best.details["selection_criterion"] = criterion
    return Selection(best=best, table=table)


def soft_scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int, floor: float = 1e-3) -> tuple[float, float]:
    """(HM, AM) of the soft per-class recall: the mean softmax probability of the true class
    over each class's samples (HM with the same ``max(R, 1e-3)`` guard as the metrics)."""
    labels = labels.long()
    p_true = torch.softmax(logits.float(), 1).gather(1, labels.view(-1, 1)).flatten().double()
    counts = torch.bincount(labels, minlength=num_classes).double()
    if bool((counts == 0).any()):
        raise NolbError("validation split: a class has no sample; cannot score per-class soft recall")
    recall = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, p_true) / counts
    return float(num_classes / (1.0 / recall.clamp_min(floor)).sum()), float(recall.mean())


def _train_on_soft_hm(settings: HeadSettings, train: FeatureSplit, val: FeatureSplit, class_counts: torch.Tensor,
                      original_head: nn.Module | None, floor: float) -> TrainedHead:
    """One GML candidate, its epoch chosen by (feasible, soft HM, soft AM) on validation
    (the GML path of :func:`train_head` with another early-stopping key)."""
    num_classes = int(class_counts.numel())

    def key(module: nn.Module) -> tuple:
        logits = head_logits(module, val.features)
        accuracy = float((logits.argmax(1) == val.labels).double().mean())
        return (accuracy >= floor, *soft_scores(logits, val.labels, num_classes))

    module = linear_head_from(original_head, int(train.features.shape[1]), num_classes, settings.init, settings.seed)
    fit = fit_head(
        module, train.features, train.labels, _loss_for(settings, class_counts),
        num_classes=num_classes, epochs=settings.epochs, batch_size=settings.batch_size,
        lr=settings.lr, weight_decay=settings.weight_decay, momentum=settings.momentum,
        sampler=settings.sampler, draws_per_epoch=train.num_images, seed=settings.seed, evaluate=key,
    )
    head = fit.module
    head.requires_grad_(False)
    score = validation_score(head_logits(head, val.features), val.labels, num_classes)
    return TrainedHead(head=head, settings=settings, val_score=score, best_epoch=fit.best_epoch,
                       details={"history": fit.history})


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
