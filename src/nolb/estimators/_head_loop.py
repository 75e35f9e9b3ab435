"""The one bridge from the estimators to stage 2's head-training loop.

Every estimator in :mod:`nolb.estimators` trains its linear head through
:func:`fit_linear_head` here, and only here is :mod:`nolb.retrain` imported: the
estimators use stage 2's public plain-tensor entry (:func:`nolb.retrain.fit_linear_head`:
the same loop, losses and validation selection as ``nolb run``'s stage 2), not a copy.  When stage 2's public entry point changes, only
this module follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


@dataclass
class FittedHead:
    """A trained linear head as plain arrays, and how it was chosen.

    Attributes:
        coef: (C, D) float32 weights.
        intercept: (C,) float32 bias.
        settings: the head's settings (method, prior strength, lr, sampler, ...).
        best_epoch: the epoch kept (the last one without validation selection).
        val_score: the validation score of the kept head (``hm``, ``am``, ...), or None.
        selection_table: one dict per candidate when settings were chosen on validation.
    """

    coef: np.ndarray
    intercept: np.ndarray
    settings: dict
    best_epoch: int | None = None
    val_score: dict | None = None
    selection_table: list[dict] = field(default_factory=list)


def fit_linear_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    class_counts: torch.Tensor,
    settings: dict,
    *,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    select: bool = False,
    prior_strengths: Sequence[float] = (0.0, 0.5, 1.0),
    lrs: Sequence[float] = (0.02, 0.1),
    samplers: Sequence[str] = ("instance", "class_balanced"),
    criterion: str = "soft_hm",
    init_head: tuple[np.ndarray, np.ndarray] | None = None,
) -> FittedHead:
    """Train one linear head with stage 2's loop, or choose its settings on validation.

    Args:
        features: (N, D) float32 training features.
        labels: (N,) int64 labels in ``[0, C)``.
        class_counts: (C,) int64 training counts n_c (GML's / BSCE's prior).
        settings: ``HeadSettings`` fields (``method``, ``prior_strength``, ``lr``, ``epochs``,
            ``batch_size``, ``weight_decay``, ``momentum``, ``sampler``, ``init``, ``seed``,
            ``matmul_dtype``).
        val_features, val_labels: the validation split (scores the head; needed by ``select``).
        select: choose GML's prior strength, lr, sampler and epoch on validation with the
            pipeline's rule (``select_head``: soft HM, then soft AM; no accuracy guard,
            since a bare feature matrix has no base model to compare with).
        prior_strengths, lrs, samplers, criterion: the candidates and criterion of ``select``.
        init_head: (coef (C, D), intercept (C,)) to start from (stage 2's ``init="original"``);
            None: a fresh head.

    Returns:
        A :class:`FittedHead`.
    """
    from nolb.config_stages import RetrainConfig
    from nolb.retrain import HeadSettings
    from nolb.retrain.api import fit_linear_head as stage2_fit

    original = None
    if init_head is not None:
        original = torch.nn.Linear(init_head[0].shape[1], init_head[0].shape[0])
        with torch.no_grad():
            original.weight.copy_(torch.as_tensor(init_head[0], dtype=torch.float32))
            original.bias.copy_(torch.as_tensor(init_head[1], dtype=torch.float32))
        settings = {**settings, "init": "original"}
    grids = RetrainConfig(select_prior_strengths=[float(t) for t in prior_strengths], select_lrs=[float(r) for r in lrs],
                          select_samplers=list(samplers), select_criterion=criterion)
    trained = stage2_fit(features, labels, class_counts, HeadSettings(**settings), val_features=val_features,
                         val_labels=val_labels, select=select, original_head=original, grids=grids)
    table = trained.details.get("selection_table", []) if select else []
    head = trained.head
    return FittedHead(
        coef=head.weight.detach().cpu().numpy().astype(np.float32, copy=True),
        intercept=head.bias.detach().cpu().numpy().astype(np.float32, copy=True),
        settings=trained.settings.to_dict(),
        best_epoch=trained.best_epoch,
        val_score=trained.val_score.to_dict() if trained.val_score is not None else None,
        selection_table=table,
    )
