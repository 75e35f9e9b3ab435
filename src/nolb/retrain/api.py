"""The plug-in API: re-train the classifier of any trained model from a notebook.

    >>> head = nolb.retrain_classifier(model, data)                     # a nolb model
    >>> head = nolb.retrain_classifier(tv_resnet, data, classifier="fc")  # torchvision

``data`` is an ``LTData`` (``nolb.data.build_data``) or any object with the same
attributes (train/val datasets, class_counts, preset, mean, std, num_classes).  Only the
training split (and the validation split, for tau-norm or ``select_on_val``) is read.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nolb.errors import NolbError
from nolb.losses import build_loss
from nolb.retrain.config import RETRAIN_METHODS, RETRAIN_MODES
from nolb.retrain.feature_source import FeatureSource
from nolb.retrain.head_methods import HeadSettings, TrainedHead, baseline_settings, train_head
from nolb.retrain.head_training import linear_head_from
from nolb.retrain.lws import LearnableWeightScaling
from nolb.retrain.online import fit_head_online
from nolb.retrain.scoring import head_logits, validation_score
from nolb.retrain.selection import select_head


def recipe_defaults(preset: str) -> dict:
    """Batch size, lr and weight decay of METHOD.md section 4 for a data preset."""
    if preset == "imagenet":
        return {"batch_size": 256, "lr": 0.005, "weight_decay": 5e-4}
    return {"batch_size": 128, "lr": 0.02, "weight_decay": 2e-4}


def retrain_classifier(
    model: nn.Module,
    train_data: Any,
    *,
    loss: str = "gml",
    prior_strength: float = 1.0,
    classifier: str = "classifier",
    mode: str = "cached",
    views: int = 4,
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
) -> nn.Linear | TrainedHead:
    """Freeze ``model``'s backbone and train a new linear classifier (stage 2).

    Args:
        model: a trained classifier; it is not modified.
        train_data: an ``LTData``-like object (see the module docstring).
        loss: ``gml`` | ``bsce`` | ``ce`` | ``crt`` | ``lws`` | ``tau_norm``.
        prior_strength: GML's tau in ``softmax(z + tau log n)`` (1 = the paper's GML).
        classifier: attribute holding the model's final layer (``"fc"`` for torchvision).
        mode: ``cached`` (features of ``views`` augmented passes computed once) or
            ``online`` (fresh augmentation every epoch).
        views: augmented views of the training set in cached mode.
        epochs, lr, batch_size, weight_decay, momentum: the recipe (None: the preset's
            defaults, METHOD.md section 4).
        sampler: ``instance`` | ``class_balanced`` | ``sqrt`` (None: the method's default).
        init: ``original`` (copy the model's head) or ``fresh``.
        select_on_val: choose tau, lr, sampler and the epoch on the validation split
            (GML only, cached mode).
        shift_bn: re-estimate BatchNorm statistics first (on a copy of the backbone).
        cache_dir: keep the features there and reuse them on the next call.
        device: where the backbone runs.
        seed: seeds augmentation and head training.
        return_details: return the :class:`TrainedHead` (settings, validation score,
            history) instead of the bare head.

    Returns:
        The new head, an ``nn.Linear`` mapping backbone features to logits (to use it:
        ``model.<classifier> = head``, or ``nolb.Ensemble(...)``).
    """
    if loss not in RETRAIN_METHODS:
        raise NolbError(f"loss: unknown stage-2 method {loss!r}, expected one of {RETRAIN_METHODS}")
    if mode not in RETRAIN_MODES:
        raise NolbError(f"mode: unknown value {mode!r}, expected one of {RETRAIN_MODES}")
    defaults = recipe_defaults(getattr(train_data, "preset", "cifar"))
    settings = HeadSettings(
        method=loss, prior_strength=float(prior_strength), epochs=int(epochs), momentum=momentum,
        lr=float(lr if lr is not None else defaults["lr"]),
        batch_size=int(batch_size or defaults["batch_size"]),
        weight_decay=float(weight_decay if weight_decay is not None else defaults["weight_decay"]),
        init=init, seed=int(seed),
    )
    if loss in ("crt", "lws", "tau_norm"):
        settings = baseline_settings(loss, settings)
    if sampler is not None:
        settings = replace(settings, sampler=sampler)
    source = FeatureSource(model, train_data, classifier=classifier, views=views if mode == "cached" else 1,
                           cache_dir=cache_dir, device=device, seed=seed, shift_bn=shift_bn)
    trained = train_on_source(source, settings, mode=mode, select_on_val=select_on_val)
    return trained if return_details else trained.head


def train_on_source(source: FeatureSource, settings: HeadSettings, *, mode: str = "cached",
                    select_on_val: bool = False) -> TrainedHead:
    """Train the head ``settings`` describe on ``source``'s frozen backbone (train/val splits only).

    Args:
        source: the frozen backbone and data.
        settings: method and recipe.
        mode: ``cached`` or ``online``.
        select_on_val: choose GML's tau, lr, sampler and epoch on validation (cached only).

    Returns:
        The :class:`TrainedHead`.
    """
    if mode == "online" and settings.method != "tau_norm":
        if select_on_val:
            raise NolbError("select_on_val: the selection runs on cached features; use mode='cached'")
        return train_online(source, settings)
    if select_on_val:
        if settings.method != "gml":
            raise NolbError(f"select_on_val: chooses GML settings; it does not apply to method {settings.method!r}")
        val = source.split("val")
        base_score = validation_score(head_logits(source.original_head, val.features), val.labels, source.num_classes)
        return select_head(settings, source.split("train"), val, source.class_counts, source.original_head,
                           base_val_score=base_score).best
    val = source.split("val") if settings.method == "tau_norm" or source.has("val") else None
    return train_head(settings, source.split("train"), source.class_counts, source.original_head, val)


def train_online(source: FeatureSource, settings: HeadSettings) -> TrainedHead:
    """Train a head of ``settings`` on freshly augmented batches of the frozen backbone."""
    counts = source.class_counts
    feature_dim = int(source.original_head.weight.shape[1])
    if settings.method == "lws":
        module: nn.Module = LearnableWeightScaling(source.original_head)
        loss_fn = build_loss("ce", counts)
    else:
        module = linear_head_from(source.original_head, feature_dim, source.num_classes, settings.init, settings.seed)
        name = "ce" if settings.method == "crt" else settings.method
        options = {"prior_strength": settings.prior_strength} if name == "gml" else {}
        loss_fn = build_loss(name, counts, **options)
    source.batch_size = settings.batch_size
    loader = source.loader("train", train=True, sampler=settings.sampler, seed=settings.seed)
    history = fit_head_online(module, source.backbone, lambda epoch: loader, loss_fn, epochs=settings.epochs,
                              lr=settings.lr, weight_decay=settings.weight_decay, momentum=settings.momentum,
                              device=source.device)
    module = module.cpu()
    head = module.to_linear() if settings.method == "lws" else module
    head.requires_grad_(False)
    return TrainedHead(head=head, settings=settings, details={"history": history, "mode": "online"})
