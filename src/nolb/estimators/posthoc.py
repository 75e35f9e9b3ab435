"""Post-hoc baselines as estimators: logit adjustment and tau-normalisation.

* :class:`LogitAdjustedClassifier` (Menon et al. 2021): ``s_c(x) - tau log pi_c`` on the
  scores of a fitted classifier (or on ``X`` itself when ``estimator="scores"``: a model's
  logits), ``pi`` the training prior;
* :class:`TauNormClassifier` (Kang et al. 2020): the linear head's weights rescaled to
  ``w_c / ||w_c||^tau``, bias dropped.

``tau`` is chosen on a validation split passed to ``fit`` (``X_val``/``y_val`` or
``eval_set``) by the rule of stage 2's tau-norm: the highest validation HM (arg-max recall,
zero recalls counted as 1e-3), ties broken by AM, then the smaller tau.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone

from nolb.errors import NolbError
from nolb.estimators._base import ScoreClassifier

DEFAULT_TAUS = tuple(round(0.1 * i, 1) for i in range(21))  # 0.0 ... 2.0


def choose_tau(scores_for_tau, taus, y_codes: np.ndarray, num_classes: int) -> tuple[float, list[dict]]:
    """The tau among ``taus`` whose scores give the best validation (HM, AM); ties: smaller tau."""
    from nolb.metrics.recall import harmonic_mean

    counts = np.bincount(y_codes, minlength=num_classes)
    if np.any(counts == 0):
        raise NolbError(f"validation split: class {int(np.flatnonzero(counts == 0)[0])} has no sample; cannot choose tau")
    best, table = None, []
    for tau in sorted(float(t) for t in taus):
        pred = np.argmax(scores_for_tau(tau), axis=1)
        recall = np.bincount(y_codes[pred == y_codes], minlength=num_classes) / counts
        key = (float(harmonic_mean(recall, 1e-3)), float(recall.mean()))
        table.append({"tau": tau, "hm": key[0], "am": key[1]})
        if best is None or key > best[0]:
            best = (key, tau)
    return best[1], table


class _PostHoc(ScoreClassifier):
    def _inner_fit(self, X, y, X_val, y_val, eval_set):
        X, codes = self._encode_fit_data(X, y)
        validation = self._validation_data(X_val, y_val, eval_set)
        self.class_counts_ = self._training_counts(codes)
        return X, codes, validation

    def _set_tau(self, scores_for_tau, validation, default: float) -> None:
        if self.tau is not None:
            self.tau_, self.tau_table_ = float(self.tau), []
        elif validation is not None:
            self.tau_, self.tau_table_ = choose_tau(scores_for_tau, self.taus, validation[1], self.classes_.size)
        else:
            self.tau_, self.tau_table_ = default, []


class LogitAdjustedClassifier(_PostHoc):
    """Post-hoc logit adjustment: ``argmax_c s_c(x) - tau log pi_c``.

    Parameters:
        estimator: a classifier whose ``predict_log_proba`` (else ``decision_function``)
            gives the scores; ``"scores"``: ``X`` already holds one score column per class
            in sorted-label order (e.g. a model's logits); None: a plain cross-entropy
            linear head (:class:`BalancedRefitClassifier` with instance sampling).
        tau: a fixed adjustment strength; None chooses it on the validation split among
            ``taus`` (1.0 without one).
        taus: the candidates.
        class_counts: training counts (the prior), in ``classes_`` order or a dict;
            default: counted from ``y``.

    Attributes: ``classes_``, ``estimator_`` (None for ``"scores"``), ``tau_``,
    ``tau_table_``, ``class_counts_``.
    """

    def __init__(self, estimator: Any = None, tau: float | None = None, taus: tuple = DEFAULT_TAUS,
                 class_counts: Any = None) -> None:
        self.estimator = estimator
        self.tau = tau
        self.taus = taus
        self.class_counts = class_counts

    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None, eval_set: Any = None) -> "LogitAdjustedClassifier":
        X, codes, validation = self._inner_fit(X, y, X_val, y_val, eval_set)
        if isinstance(self.estimator, str):
            if self.estimator != "scores":
                raise NolbError(f"LogitAdjustedClassifier: estimator={self.estimator!r}; a string must be 'scores'")
            if X.shape[1] != self.classes_.size:
                raise NolbError(f"LogitAdjustedClassifier(estimator='scores'): X has {X.shape[1]} columns "
                                f"but y has {self.classes_.size} classes")
            self.estimator_ = None
        else:
            from nolb.estimators.linear_head import BalancedRefitClassifier

            inner = BalancedRefitClassifier(sampler="instance") if self.estimator is None else clone(self.estimator)
            self.estimator_ = inner.fit(X, self.classes_[codes])
        self.log_prior_ = np.log(self.class_counts_ / self.class_counts_.sum()).astype(np.float32)
        if validation is not None:
            val_scores = self._base_scores(validation[0])
            scores_for_tau = lambda tau: val_scores - tau * self.log_prior_  # noqa: E731
        else:
            scores_for_tau = None
        self._set_tau(scores_for_tau, validation, default=1.0)
        return self

    def _base_scores(self, X: np.ndarray) -> np.ndarray:
        if self.estimator_ is None:
            return X
        if hasattr(self.estimator_, "predict_log_proba"):
            return self.estimator_.predict_log_proba(X)
        scores = self.estimator_.decision_function(X)
        return np.stack([-scores / 2, scores / 2], axis=1) if scores.ndim == 1 else scores

    def _class_scores(self, X: np.ndarray) -> np.ndarray:
        return self._base_scores(X) - self.tau_ * self.log_prior_.astype(np.float64)


class TauNormClassifier(_PostHoc):
    """tau-normalisation of a linear head: scores ``x (w_c / ||w_c||^tau)``, no bias.

    Parameters:
        estimator: a linear classifier with a (C, D) ``coef_`` after ``fit``; None: a plain
            cross-entropy head (:class:`BalancedRefitClassifier` with instance sampling).
        tau: a fixed power; None chooses it on the validation split among ``taus`` (1.0
            without one).
        taus: the candidates.
    """

    def __init__(self, estimator: Any = None, tau: float | None = None, taus: tuple = DEFAULT_TAUS) -> None:
        self.estimator = estimator
        self.tau = tau
        self.taus = taus

    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None, eval_set: Any = None) -> "TauNormClassifier":
        from nolb.estimators.linear_head import BalancedRefitClassifier

        X, codes, validation = self._inner_fit(X, y, X_val, y_val, eval_set)
        inner = BalancedRefitClassifier(sampler="instance") if self.estimator is None else clone(self.estimator)
        self.estimator_ = inner.fit(X, self.classes_[codes])
        weight = np.asarray(self.estimator_.coef_, dtype=np.float32)
        if weight.shape != (self.classes_.size, X.shape[1]):
            raise NolbError(f"TauNormClassifier: the estimator's coef_ has shape {weight.shape}, "
                            f"expected ({self.classes_.size}, {X.shape[1]})")
        norms = np.maximum(np.linalg.norm(weight, axis=1, keepdims=True), 1e-12)
        scores_for_tau = None
        if validation is not None:
            scores_for_tau = lambda tau: validation[0] @ (weight / norms**tau).T  # noqa: E731
        self._set_tau(scores_for_tau, validation, default=1.0)
        self.coef_ = (weight / norms**self.tau_).astype(np.float32)
        return self

    def _class_scores(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef_.T.astype(X.dtype)
