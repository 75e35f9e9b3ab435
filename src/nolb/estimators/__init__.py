"""scikit-learn estimators for long-tailed classification on any feature matrix.

:class:`GMLClassifier` trains a linear head with the Geometric Mean Loss through stage 2's
own loop; :class:`BalancedRefitClassifier` (cRT), :class:`LogitAdjustedClassifier`
(post-hoc logit adjustment) and :class:`TauNormClassifier` are the baselines in the same
shape.  :func:`retrain_feature_files` is ``nolb retrain --features``.  Names are imported
on first use (scikit-learn and torch load only then).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "GMLClassifier": "nolb.estimators.linear_head",
    "BalancedRefitClassifier": "nolb.estimators.linear_head",
    "LinearHeadClassifier": "nolb.estimators.linear_head",
    "LogitAdjustedClassifier": "nolb.estimators.posthoc",
    "TauNormClassifier": "nolb.estimators.posthoc",
    "retrain_feature_files": "nolb.estimators.feature_files",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nolb.estimators' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
