"""Stage 2 (re-train the classifier on a frozen backbone) and stage 3 (the ensemble).

The modules follow the flow: settings -> features (backbone, features, feature_source,
online) -> heads (head_training, heads, lws, tau_norm) -> selection (scoring, selection) ->
ensemble (ensemble, ensemble_io) -> final_model -> stages -> report -> pipeline / api (the
entry points); docs/ARCHITECTURE.md draws it.

Public API:

* :func:`retrain_classifier` -- the plug-in: a new head for any trained model;
* :class:`Ensemble`, :func:`select_temperatures`, :func:`save_ensemble`, :func:`load_ensemble`;
* :func:`extract_features`, :class:`FeatureCache`, :class:`FeatureSource` -- the feature cache;
* :func:`fit_linear_head` -- a head from plain feature tensors (the stable entry);
* :class:`HeadSettings` (built from the config), :func:`train_head`, :func:`select_head` --
  heads on cached features;
* :func:`tau_normalized_head`, :class:`LearnableWeightScaling` -- the decoupling baselines;
* :func:`run_pipeline` -- stage 1 -> 2 -> 3 -> report (``nolb run``).

Submodules are imported on first use of a name.
"""

from __future__ import annotations

import importlib

from nolb.config_stages import EnsembleConfig, RetrainConfig

_LAZY = {
    "retrain_classifier": "nolb.retrain.api",
    "train_on_source": "nolb.retrain.api",
    "Ensemble": "nolb.retrain.ensemble",
    "ensemble_log_probs": "nolb.retrain.ensemble",
    "select_temperatures": "nolb.retrain.ensemble",
    "save_ensemble": "nolb.retrain.ensemble_io",
    "load_ensemble": "nolb.retrain.ensemble_io",
    "extract_features": "nolb.retrain.features",
    "FeatureCache": "nolb.retrain.features",
    "FeatureSplit": "nolb.retrain.features",
    "FeatureSource": "nolb.retrain.feature_source",
    "fit_linear_head": "nolb.retrain.api",
    "HeadSettings": "nolb.retrain.settings",
    "TrainedHead": "nolb.retrain.heads",
    "train_head": "nolb.retrain.heads",
    "Criterion": "nolb.retrain.scoring",
    "select_head": "nolb.retrain.selection",
    "tau_normalized_head": "nolb.retrain.tau_norm",
    "LearnableWeightScaling": "nolb.retrain.lws",
    "split_classifier": "nolb.retrain.backbone",
    "run_pipeline": "nolb.retrain.pipeline",
}

__all__ = ["EnsembleConfig", "RetrainConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nolb.retrain' has no attribute {name!r}")
