"""One head on cached features: every stage-2 method through the same training loop.

GML, BSCE, CE and cRT train a linear head with their loss; LWS trains per-class scales of
the frozen original head (then folds them into a linear head); tau-norm trains nothing
(its tau is chosen on validation).  :func:`trainable_head` builds the module and loss a
method trains (also used by the online mode), :func:`train_head` runs
:func:`nolb.retrain.head_training.fit_head` on them (float32 or bf16 matmuls), keeping the
epoch a :class:`~nolb.retrain.scoring.Criterion` ranks best when one is given.  Every
method returns a plain ``nn.Linear`` head, so any of them can replace the original
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

from dataclasses import dataclass, field

import torch
from torch import nn

from nolb.config_stages import RETRAIN_METHODS
from nolb.errors import NolbError
from nolb.losses import build_loss
from nolb.retrain.features import FeatureSplit
from nolb.retrain.head_training import fit_head, linear_head_from
from nolb.retrain.lws import LearnableWeightScaling
from nolb.retrain.scoring import Criterion, ValScore, head_logits, validation_score
from nolb.retrain.settings import HeadSettings
from nolb.retrain.tau_norm import select_tau, tau_normalized_head


@dataclass
class TrainedHead:
    """A stage-2 head with how it was made and how it scored on the validation split."""

    head: nn.Linear
    settings: HeadSettings
    val_score: ValScore | None = None
    best_epoch: int | None = None
    details: dict = field(default_factory=dict)

    @property
    def module(self) -> nn.Linear:
        """The head: an ``nn.Module`` mapping (N, D) features to (N, C) logits."""
        return self.head

    def describe(self) -> dict:
        return {
            "settings": self.settings.to_dict(),
            "val": self.val_score.to_dict() if self.val_score else None,
            "best_epoch": self.best_epoch,
            **self.details,
        }


def trainable_head(settings: HeadSettings, original_head: nn.Module | None, feature_dim: int,
                   class_counts: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """``(module, loss)`` that ``settings.method`` trains (not tau-norm, which trains nothing).

    LWS: per-class scales of the frozen original head with cross-entropy.  Otherwise a
    linear head (a copy of ``original_head`` or fresh) with GML (prior strength and
    ``loss_options``), BSCE or cross-entropy (CE, cRT).
    """
    if settings.method == "lws":
        return LearnableWeightScaling(_linear(original_head)), build_loss("ce", class_counts)
    module = linear_head_from(original_head, feature_dim, int(class_counts.numel()), settings.init, settings.seed)
    if settings.method == "gml":
        loss = build_loss("gml", class_counts, prior_strength=settings.prior_strength, **settings.loss_options)
    else:
        loss = build_loss("ce" if settings.method == "crt" else settings.method, class_counts)
    return module, loss


def as_linear(module: nn.Module) -> nn.Linear:
    """The trained module as a frozen ``nn.Linear`` (LWS folds its scales in)."""
    head = module.to_linear() if isinstance(module, LearnableWeightScaling) else module
    head.requires_grad_(False)
    return head


def train_head(
    settings: HeadSettings,
    train: FeatureSplit,
    class_counts: torch.Tensor,
    original_head: nn.Module | None,
    val: FeatureSplit | None = None,
    *,
    criterion: Criterion | None = None,
) -> TrainedHead:
    """Train (or derive) one head on cached features.

    Args:
        settings: the method and its hyper-parameters.
        train: pooled training features (all views).
        class_counts: (C,) training counts n_c (the prior of GML/BSCE).
        original_head: the stage-1 classifier (init, LWS, tau-norm).
        val: validation features; required by tau-norm and by ``criterion``.
        criterion: keep the epoch (tau-norm: the tau) this rule ranks best on ``val``;
            None trains every epoch (tau-norm then ranks by arg-max HM).

    Returns:
        The :class:`TrainedHead` (with its validation score when ``val`` is given).
    """
    if settings.method not in RETRAIN_METHODS:
        raise NolbError(f"retrain.method: unknown method {settings.method!r}, expected one of {RETRAIN_METHODS}")
    if val is None and (criterion is not None or settings.method == "tau_norm"):
        raise NolbError(f"retrain: {settings.method} chosen on validation needs a validation split, but there is none")
    num_classes = int(class_counts.numel())
    best_epoch = None
    if settings.method == "tau_norm":
        tau, _, table = select_tau(_linear(original_head), val.features, val.labels, num_classes, criterion=criterion)
        head = tau_normalized_head(_linear(original_head), tau)
        details = {"tau": tau, "tau_table": table}
    else:
        module, loss = trainable_head(settings, original_head, int(train.features.shape[1]), class_counts)
        evaluate = None if criterion is None else (lambda m: criterion.head_key(m, val.features, val.labels))
        fit = fit_head(
            module, train.features, train.labels, loss,
            num_classes=num_classes, epochs=settings.epochs, batch_size=settings.batch_size,
            lr=settings.lr, weight_decay=settings.weight_decay, momentum=settings.momentum,
            sampler=settings.sampler, draws_per_epoch=train.num_images, seed=settings.seed, evaluate=evaluate,
            matmul_dtype=settings.matmul_dtype,
        )
        head, best_epoch, details = fit.module, fit.best_epoch, {"history": fit.history}
    head = as_linear(head)
    val_score = validation_score(head_logits(head, val.features), val.labels, num_classes) if val is not None else None
    return TrainedHead(head=head, settings=settings, val_score=val_score, best_epoch=best_epoch, details=details)


def _linear(head: nn.Module | None) -> nn.Linear:
    if not isinstance(head, nn.Linear):
        raise NolbError(f"retrain: LWS and tau-norm need a linear original classifier, got {type(head).__name__}")
    return head
