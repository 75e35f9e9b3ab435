"""nolb: No One Left Behind -- long-tailed recognition that lifts the worst classes.

An implementation of "No One Left Behind: Improving the Worst Categories in Long-Tailed
Learning" (Du & Wu, CVPR 2023): worst-class metrics, stage-1 base models, stage-2
Geometric Mean Loss classifier re-training on a frozen backbone, and the stage-3 ensemble.

``nolb.retrain_classifier``, ``nolb.Ensemble`` and ``nolb.GMLClassifier`` (a scikit-learn
estimator) are imported lazily (on first use), so
``import nolb`` stays cheap.
"""

__version__ = "0.1.0"

_LAZY = {
    "retrain_classifier": "nolb.retrain.api",
    "Ensemble": "nolb.retrain.ensemble",
    "load_model": "nolb.deploy.model_file",
    "GMLClassifier": "nolb.estimators.linear_head",
    "scorers": "nolb.metrics.scorers",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nolb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
