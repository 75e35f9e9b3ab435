"""Worst-class scores for scikit-learn model selection.

    from sklearn.model_selection import GridSearchCV
    import nolb.metrics.scorers as scorers

    GridSearchCV(clf, grid, scoring=nolb.scorers["hm"])               # one scorer
    GridSearchCV(clf, grid, scoring=scorers.all_scorers(), refit="hm")  # all of them

(Scorer objects rather than names such as ``scoring="nolb_hm"``: scikit-learn validates
string names against a set frozen when it is imported, so a registered name is refused.)

``hm_score``, ``gm_score`` and ``lowest_recall_score`` take ``(y_true, y_pred)`` of any
label type; the classes are those of ``y_true`` and ``y_pred`` together (or ``labels``).
They are the metrics of :mod:`nolb.metrics`: per-class recall ``R_c``, a zero recall
counted as ``zero_recall`` (1e-3) in HM and GM.  A class that is predicted but never true
has no recall and is left out, as in ``sklearn.metrics.recall_score(average=None)``.
scikit-learn is imported only when a scorer object is built.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nolb.errors import NolbError
from nolb.metrics.recall import geometric_mean, harmonic_mean

SCORER_NAMES = ("hm", "gm", "lowest_recall", "num_zero_recall")


def per_class_recall(y_true: Any, y_pred: Any, labels: Any = None) -> np.ndarray:
    """Recall of each class that occurs in ``y_true`` (sorted; only ``labels`` when given)."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise NolbError(f"y_true has {y_true.size} labels but y_pred {y_pred.size}")
    if labels is not None:
        keep = np.isin(y_true, np.asarray(labels))
        y_true, y_pred = y_true[keep], y_pred[keep]
    if y_true.size == 0:
        raise NolbError("y_true is empty (or holds none of the given labels)")
    classes, codes = np.unique(y_true, return_inverse=True)
    counts = np.bincount(codes, minlength=classes.size)
    hits = np.bincount(codes[y_pred == y_true], minlength=classes.size)
    return hits / counts


def hm_score(y_true: Any, y_pred: Any, *, labels: Any = None, zero_recall: float = 1e-3) -> float:
    """Harmonic mean of the per-class recalls (a zero recall counts as ``zero_recall``)."""
    return float(harmonic_mean(per_class_recall(y_true, y_pred, labels), zero_recall))


def gm_score(y_true: Any, y_pred: Any, *, labels: Any = None, zero_recall: float = 1e-3) -> float:
    """Geometric mean of the per-class recalls (a zero recall counts as ``zero_recall``)."""
    return float(geometric_mean(per_class_recall(y_true, y_pred, labels), zero_recall))


def lowest_recall_score(y_true: Any, y_pred: Any, *, labels: Any = None) -> float:
    """The lowest per-class recall."""
    return float(per_class_recall(y_true, y_pred, labels).min())


def num_zero_recall(y_true: Any, y_pred: Any, *, labels: Any = None) -> int:
    """How many classes have recall 0 (lower is better)."""
    return int((per_class_recall(y_true, y_pred, labels) == 0).sum())


_FUNCTIONS = {"hm": (hm_score, True), "gm": (gm_score, True), "lowest_recall": (lowest_recall_score, True),
              "num_zero_recall": (num_zero_recall, False)}


def make_scorer(name: str, **options):
    """A scikit-learn scorer for ``name`` in :data:`SCORER_NAMES` (``num_zero_recall`` is
    negated by scikit-learn, as lower is better)."""
    from sklearn.metrics import make_scorer as sk_make_scorer

    if name not in _FUNCTIONS:
        raise NolbError(f"nolb scorer {name!r}: expected one of {SCORER_NAMES}")
    function, greater = _FUNCTIONS[name]
    return sk_make_scorer(function, greater_is_better=greater, **options)


class _Scorers(dict):
    """``SCORERS["hm"]``: scorer objects built on first access (scikit-learn imported then)."""

    def __missing__(self, name: str):
        value = make_scorer(name)
        self[name] = value
        return value


SCORERS = _Scorers()


def all_scorers() -> dict:
    """``{name: scorer}`` for every name in :data:`SCORER_NAMES` (multi-metric ``scoring``)."""
    return {name: SCORERS[name] for name in SCORER_NAMES}


scorers = SCORERS  # ``nolb.scorers["hm"]``
