"""The plug-in API: re-train the classifier of any trained model from a notebook.

    >>> head = nolb.retrain_classifier(model, data)                     # a nolb model
    >>> head = nolb.retrain_classifier(tv_resnet, data, classifier="fc")  # torchvision
    >>> fit = nolb.retrain.fit_linear_head(features, labels, counts, HeadSettings())  # tensors only

``data`` is an ``LTData`` (``nolb.data.build_data``) or any object with the same
attributes (train/val datasets, class_counts, preset, mean, std, num_classes).  Only the
training split (and the validation split, for tau-norm or ``select_on_val``) is read.
Every entry builds its :class:`~nolb.retrain.settings.HeadSettings` from a ``retrain``
config section and trains through :func:`nolb.retrain.heads.train_head` (or
:func:`nolb.retrain.selection.select_head`), the same path as ``nolb run``.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nolb.config_stages import RetrainConfig, check_stage_sections
from nolb.errors import NolbError
from nolb.losses import loss_options
from nolb.retrain.feature_source import FeatureSource
from nolb.retrain.features import FeatureSplit
from nolb.retrain.heads import TrainedHead, as_linear, train_head, trainable_head
from nolb.retrain.online import fit_head_online
from nolb.retrain.scoring import Criterion, head_logits, validation_score
from nolb.retrain.selection import baseline_candidates, nolb_candidates, select_head
from nolb.retrain.settings import HeadSettings, stage2_recipe


def retrain_classifier(
    model: nn.Module,
    train_data: Any,
    *,
    loss: str = "gml",
    prior_strength: float = 1.0,
    classifier: str = "classifier",
    mode: str = "cached",
    views: int = 1,
    epochs: int = 10,
    lr: float | None = None,
    batch_size: int | None = None,
    weight_decay: float | None = None,
    momentum: float = 0.9,
    sampler: str | None = None,
    init: str = "original",
    select_on_val: bool = False,
    shift_bn: bool = False,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    return_details: bool = False,
    **config: Any,
) -> nn.Linear | TrainedHead:
    """Freeze ``model``'s backbone and train a new linear classifier (stage 2).

    Args:
        model: a trained classifier; it is not modified.
        train_data: an ``LTData``-like object (see the module docstring).
        loss: ``gml`` | ``bsce`` | ``ce`` | ``crt`` | ``lws`` | ``tau_norm`` (``retrain.method``).
        prior_strength: GML's tau in ``softmax(z + tau log n)`` (1 = the paper's GML).
        classifier: attribute holding the model's final layer (``"fc"`` for torchvision).
        mode: ``cached`` (features of ``views`` augmented passes computed once) or
            ``online`` (fresh augmentation every epoch).
        views: augmented views of the training set in cached mode.
        epochs, lr, batch_size, weight_decay, momentum: the recipe (None: the data
            preset's recipe, METHOD.md section 4, see :func:`~nolb.retrain.settings.stage2_recipe`).
        sampler: ``instance`` | ``class_balanced`` | ``sqrt`` (None: the method's default).
        init: ``original`` (copy the model's head) or ``fresh``.
        select_on_val: choose the head on the validation split (GML: tau, lr, sampler;
            cRT/LWS: lr, sampler; and the epoch), as ``nolb run`` does (cached mode).
        shift_bn: re-estimate BatchNorm statistics first (on a copy of the backbone).
        cache_dir: keep the features there and reuse them on the next call.
        device: where the backbone runs.
        seed: seeds augmentation and head training.
        return_details: return the :class:`TrainedHead` (settings, validation score,
            history) instead of the bare head.
        **config: any other ``retrain`` config key (``loss_options={"aggregate": ...}``,
            ``select_lrs=[...]``, ``matmul_dtype="bfloat16"``, ...).

    Returns:
        The new head, an ``nn.Linear`` mapping backbone features to logits (to use it:
        ``model.<classifier> = head``, or ``nolb.Ensemble(...)``).
    """
    given = {"method": loss, "prior_strength": prior_strength, "mode": mode, "views": views, "epochs": epochs,
             "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay, "momentum": momentum,
             "sampler": sampler, "init": init, "select_on_val": select_on_val, "shift_bn": shift_bn, "seed": seed,
             **config}
    unknown = sorted(set(given) - {f.name for f in fields(RetrainConfig)})
    if unknown:
        raise NolbError(f"retrain_classifier: unknown option {unknown[0]!r} (the keys of the 'retrain' config section)")
    settings_config = replace(stage2_recipe(getattr(train_data, "preset", "cifar")),
                              **{k: v for k, v in given.items() if v is not None})
    _validate(settings_config)
    settings = HeadSettings.from_config(settings_config)
    if sampler is not None:
        settings = replace(settings, sampler=sampler)
    source = FeatureSource(model, train_data, classifier=classifier, views=views if mode == "cached" else 1,
                           cache_dir=cache_dir, device=device, seed=seed, shift_bn=shift_bn,
                           extract_dtype=settings_config.extract_dtype)
    trained = train_on_source(source, settings, settings_config)
    return trained if return_details else trained.head


def _validate(config: RetrainConfig) -> None:
    def check(ok: bool, key: str, problem: str) -> None:
        if not ok:
            name = key.split(".", 1)[1]
            raise NolbError(f"retrain_classifier: {name} {problem}, got {getattr(config, name, None)!r}")

    from nolb.config_stages import EnsembleConfig

    check_stage_sections(config, EnsembleConfig(), check, loss_options("gml"))


def train_on_source(source: FeatureSource, settings: HeadSettings, config: RetrainConfig | None = None) -> TrainedHead:
    """Train the head ``settings`` describe on ``source``'s frozen backbone (train/val splits only).

    Args:
        source: the frozen backbone and data.
        settings: method and recipe.
        config: the ``retrain`` section (mode, ``select_on_val`` and the selection grids;
            None: the defaults, no selection).

    Returns:
        The :class:`TrainedHead`.
    """
    config = config or replace(RetrainConfig(), select_on_val=False)
    if config.mode == "online":
        return train_online(source, settings)
    val = source.split("val") if settings.method == "tau_norm" or source.has("val") else None
    if not config.select_on_val:
        return train_head(settings, source.split("train"), source.class_counts, source.original_head, val)
    if val is None:
        raise NolbError("select_on_val: the dataset has no validation split to choose on")
    base = validation_score(head_logits(source.original_head, val.features), val.labels, source.num_classes)
    criterion = Criterion.named(config.select_criterion, source.num_classes, base, config.select_acc_tolerance)
    candidates = _candidates(settings, config)
    return select_head(candidates, source.split("train"), val, source.class_counts, source.original_head, criterion).best


def _candidates(settings: HeadSettings, config: RetrainConfig) -> list[HeadSettings]:
    if settings.method == "gml":
        return nolb_candidates(settings, config)
    if settings.method in ("crt", "lws", "tau_norm"):
        return baseline_candidates(settings.method, settings, config)
    raise NolbError(f"select_on_val: chooses GML, cRT, LWS or tau-norm settings, not method {settings.method!r}")


def fit_linear_head(
    features: torch.Tensor,
    labels: torch.Tensor,
    class_counts: torch.Tensor,
    settings: HeadSettings,
    *,
    val_features: torch.Tensor | None = None,
    val_labels: torch.Tensor | None = None,
    select: bool = False,
    original_head: nn.Linear | None = None,
    grids: RetrainConfig | None = None,
) -> TrainedHead:
    """Train a linear head on plain feature tensors (no model, no dataset): the stable entry.

    Args:
        features: (N, D) float features (one row per training sample).
        labels: (N,) int64 labels in ``[0, C)``.
        class_counts: (C,) training counts n_c (the prior of GML/BSCE).
        settings: the method and recipe; ``init="original"`` needs ``original_head`` (without
            one the head starts fresh).  LWS and tau-norm need ``original_head``.
        val_features, val_labels: a validation split; needed by ``select`` and tau-norm.
        select: choose the head on validation as ``nolb run`` does (GML: tau x lr x sampler
            of the default grids; cRT/LWS: as many lrs x samplers; the epoch by early stopping;
            criterion soft HM, no accuracy guard since there is no base model).
        original_head: an existing linear classifier on these features (optional).
        grids: the ``select_*`` candidate lists and ``select_criterion`` of ``select``
            (default: those of :class:`nolb.config_stages.RetrainConfig`).

    Returns:
        A :class:`TrainedHead`; ``.module`` maps (N, D) features to (N, C) logits.  With
        ``select``, ``details["selection_table"]`` holds every candidate's validation scores.
    """
    counts = torch.as_tensor(class_counts, dtype=torch.long)
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise NolbError(f"fit_linear_head: features must be (N, D) and labels (N,), got {tuple(features.shape)} "
                        f"and {tuple(labels.shape)}")
    if original_head is None and settings.init == "original":
        settings = replace(settings, init="fresh")
    train = FeatureSplit(features, labels.long(), features.shape[0])
    val = None
    if val_features is not None and val_labels is not None:
        val = FeatureSplit(val_features, val_labels.long(), val_features.shape[0])
    if not select:
        return train_head(settings, train, counts, original_head, val)
    if val is None:
        raise NolbError("fit_linear_head: select=True needs val_features and val_labels")
    grids = grids if grids is not None else RetrainConfig()
    criterion = Criterion.named(grids.select_criterion, int(counts.numel()))
    selection = select_head(_candidates(settings, grids), train, val, counts, original_head, criterion)
    selection.best.details["selection_table"] = selection.table
    return selection.best


def train_online(source: FeatureSource, settings: HeadSettings) -> TrainedHead:
    """Train a head of ``settings`` on freshly augmented batches of the frozen backbone."""
    if settings.method == "tau_norm":
        return train_head(settings, source.split("train"), source.class_counts, source.original_head,
                          source.split("val"))
    feature_dim = int(source.original_head.weight.shape[1])
    module, loss_fn = trainable_head(settings, source.original_head, feature_dim, source.class_counts)
    source.batch_size = settings.batch_size
    loader = source.loader("train", train=True, sampler=settings.sampler, seed=settings.seed)
    history = fit_head_online(module, source.backbone, lambda epoch: loader, loss_fn, epochs=settings.epochs,
                              lr=settings.lr, weight_decay=settings.weight_decay, momentum=settings.momentum,
                              device=source.device)
    return TrainedHead(head=as_linear(module.cpu()), settings=settings, details={"history": history, "mode": "online"})
