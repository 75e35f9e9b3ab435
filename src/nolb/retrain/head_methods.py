"""Stage-2 methods on cached features: GML, BSCE, CE, cRT, LWS and tau-normalisation.

Every method returns a plain ``nn.Linear`` head, so any of them can replace the original
classifier or join it in the ensemble.

=========  ===============================================  =====================
method     what is trained                                  default sampler/init
=========  ===============================================  =====================
gml        new head, Geometric Mean Loss (prior strength)   instance / original
bsce       new head, Balanced Softmax CE                    instance / original
ce         new head, cross-entropy                          instance / original
crt        new head, CE (Kang et al. 2020)                  class_balanced / fresh
lws        per-class scales of the frozen original head     class_balanced / -
tau_norm   nothing: ``w_c / ||w_c||^tau``, tau on val       - / -
=========  ===============================================  =====================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.losses import build_loss
from nolb.retrain.config import RETRAIN_METHODS
from nolb.retrain.features import FeatureSplit
from nolb.retrain.head_training import fit_head, linear_head_from
from nolb.retrain.lws import LearnableWeightScaling
from nolb.retrain.scoring import ValScore, head_logits, validation_score
from nolb.retrain.tau_norm import select_tau, tau_normalized_head


@dataclass(frozen=True)
class HeadSettings:
    """Everything that defines one stage-2 head (recorded with it)."""

    method: str = "gml"
    prior_strength: float = 1.0
    lr: float = 0.02
    epochs: int = 10
    batch_size: int = 128
    weight_decay: float = 2e-4
    momentum: float = 0.9
    sampler: str = "instance"
    init: str = "original"
    seed: int = 0
    matmul_dtype: str = "float32"  # "bfloat16": faster head matmuls on AMX/AVX-512-BF16 CPUs

    def to_dict(self) -> dict:
        return asdict(self)


def baseline_settings(method: str, base: HeadSettings) -> HeadSettings:
    """The classic decoupling recipe for ``method`` on top of ``base``'s optimiser settings."""
    if method == "crt":
        return replace(base, method="crt", sampler="class_balanced", init="fresh")
    if method == "lws":
        return replace(base, method="lws", sampler="class_balanced", init="original")
    if method == "tau_norm":
        return replace(base, method="tau_norm", init="original")
    raise NolbError(f"retrain.baselines: unknown baseline {method!r}, expected crt, lws or tau_norm")


@dataclass
class TrainedHead:
    """A stage-2 head with how it was made and how it scored on the validation split."""

    head: nn.Linear
    settings: HeadSettings
    val_score: ValScore | None = None
    best_epoch: int | None = None
    details: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "settings": self.settings.to_dict(),
            "val": self.val_score.to_dict() if self.val_score else None,
            "best_epoch": self.best_epoch,
            **self.details,
        }


def train_head(
    settings: HeadSettings,
    train: FeatureSplit,
    class_counts: torch.Tensor,
    original_head: nn.Module | None,
    val: FeatureSplit | None = None,
    *,
    early_stopping: bool = False,
    score_fn: Callable[[ValScore], tuple] | None = None,
) -> TrainedHead:
    """Train (or derive) one head on cached features.

    Args:
        settings: the method and its hyper-parameters.
        train: pooled training features (all views).
        class_counts: (C,) training counts n_c (the prior of GML/BSCE).
        original_head: the stage-1 classifier (init, LWS, tau-norm).
        val: validation features; required by tau_norm and by early stopping.
        early_stopping: keep the epoch with the best validation score.
        score_fn: maps a ValScore to the key to maximise (default (hm, am)).

    Returns:
        The :class:`TrainedHead` (with its validation score when ``val`` is given).
    """
    if settings.method not in RETRAIN_METHODS:
        raise NolbError(f"retrain.method: unknown method {settings.method!r}, expected one of {RETRAIN_METHODS}")
    num_classes = int(class_counts.numel())
    feature_dim = int(train.features.shape[1])
    key = score_fn or (lambda s: (s.hm, s.am))

    def score(module: nn.Module) -> ValScore:
        return validation_score(head_logits(module, val.features), val.labels, num_classes)

    details: dict = {}
    best_epoch = None
    if settings.method == "tau_norm":
        if val is None:
            raise NolbError("retrain: tau_norm chooses tau on the validation split, but there is none")
        tau, _, table = select_tau(_linear(original_head), val.features, val.labels, num_classes)
        head = tau_normalized_head(_linear(original_head), tau)
        details = {"tau": tau, "tau_table": table}
    else:
        if settings.method == "lws":
            module = LearnableWeightScaling(_linear(original_head))
            loss = build_loss("ce", class_counts)
        else:
            module = linear_head_from(original_head, feature_dim, num_classes, settings.init, settings.seed)
            loss = _loss_for(settings, class_counts)
        evaluate = None
        if early_stopping:
            if val is None:
                raise NolbError("retrain: early stopping needs a validation split")
            evaluate = lambda m: key(score(m))  # noqa: E731
        fit = fit_head(
            module, train.features, train.labels, loss,
            num_classes=num_classes, epochs=settings.epochs, batch_size=settings.batch_size,
            lr=settings.lr, weight_decay=settings.weight_decay, momentum=settings.momentum,
            sampler=settings.sampler, draws_per_epoch=train.num_images, seed=settings.seed, evaluate=evaluate,
            matmul_dtype=settings.matmul_dtype,
        )
        head = fit.module.to_linear() if settings.method == "lws" else fit.module
        best_epoch = fit.best_epoch
        details = {"history": fit.history}
    head.requires_grad_(False)
    val_score = score(head) if val is not None else None
    return TrainedHead(head=head, settings=settings, val_score=val_score, best_epoch=best_epoch, details=details)


def _loss_for(settings: HeadSettings, class_counts: torch.Tensor) -> nn.Module:
    if settings.method == "gml":
        return build_loss("gml", class_counts, prior_strength=settings.prior_strength)
    return build_loss("ce" if settings.method == "crt" else settings.method, class_counts)


def _linear(head: nn.Module | None) -> nn.Linear:
    if not isinstance(head, nn.Linear):
        raise NolbError(
            f"retrain: LWS and tau-norm need a linear original classifier, got {type(head).__name__}"
        )
    return head
