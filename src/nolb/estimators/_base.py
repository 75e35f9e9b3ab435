"""What every nolb estimator shares: label encoding, class counts, validation sets and the
prediction methods built on one ``(n_samples, n_classes)`` score matrix.

Subclasses implement ``_class_scores(X)`` (raw class scores, columns in ``classes_``
order, no prior added); ``predict``, ``predict_proba`` (softmax of the scores),
``decision_function`` and ``score`` (sklearn's accuracy) follow from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from nolb.errors import NolbError

_CHUNK = 16384  # rows scored at a time


class ScoreClassifier(ClassifierMixin, BaseEstimator):
    """Base class: predictions from ``_class_scores``; helpers for ``fit``."""

    def _class_scores(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ fit helpers
    def _encode_fit_data(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validate X and y, set ``classes_`` and ``n_features_in_``; return (X float32, y codes)."""
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64])
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"{type(self).__name__}: y has only one class ({self.classes_[0]!r}); need at least 2 classes")
        return np.asarray(X, dtype=np.float32), codes.astype(np.int64)

    def _encode_labels(self, y: Any, what: str) -> np.ndarray:
        """Codes of ``y`` in ``classes_``; a label unseen in training raises."""
        y = np.asarray(y)
        if y.ndim != 1:
            y = np.ravel(y)
        codes = np.searchsorted(self.classes_, y)
        codes = np.clip(codes, 0, self.classes_.size - 1)
        unknown = self.classes_[codes] != y
        if np.any(unknown):
            first = y[np.flatnonzero(unknown)[0]].tolist()
            raise NolbError(f"{what}: label {first!r} does not occur in the training labels")
        return codes.astype(np.int64)

    def _validation_data(self, X_val: Any, y_val: Any, eval_set: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """The validation split from ``X_val``/``y_val`` or ``eval_set`` (a pair or a list of one pair)."""
        if eval_set is not None:
            if X_val is not None or y_val is not None:
                raise NolbError(f"{type(self).__name__}.fit: give X_val/y_val or eval_set, not both")
            if isinstance(eval_set, list):
                if len(eval_set) != 1:
                    raise NolbError(f"{type(self).__name__}.fit: eval_set holds {len(eval_set)} sets; "
                                    "give one (X_val, y_val)")
                eval_set = eval_set[0]
            try:
                X_val, y_val = eval_set
            except (TypeError, ValueError):
                raise NolbError(f"{type(self).__name__}.fit: eval_set must be a pair (X_val, y_val)") from None
        if X_val is None and y_val is None:
            return None
        if X_val is None or y_val is None:
            raise NolbError(f"{type(self).__name__}.fit: give both X_val and y_val")
        X_val = validate_data(self, X_val, dtype=[np.float32, np.float64], reset=False)
        codes = self._encode_labels(y_val, "y_val")
        if codes.shape[0] != X_val.shape[0]:
            raise NolbError(f"{type(self).__name__}.fit: X_val has {X_val.shape[0]} rows but y_val {codes.shape[0]} labels")
        return np.asarray(X_val, dtype=np.float32), codes

    def _training_counts(self, codes: np.ndarray) -> np.ndarray:
        """(C,) training counts n_c: ``class_counts`` when given (array in ``classes_`` order or
        a {label: count} dict), else counted from ``y``."""
        given = getattr(self, "class_counts", None)
        num_classes = self.classes_.size
        if given is None:
            return np.bincount(codes, minlength=num_classes).astype(np.int64)
        if isinstance(given, dict):
            missing = [label for label in self.classes_ if label not in given]
            if missing:
                raise NolbError(f"class_counts: no count for class {missing[0]!r}")
            counts = np.array([given[label] for label in self.classes_], dtype=np.float64)
        else:
            counts = np.asarray(given, dtype=np.float64).ravel()
            if counts.size != num_classes:
                raise NolbError(f"class_counts: {counts.size} values for {num_classes} classes")
        if not np.all(np.isfinite(counts)) or np.any(counts < 1) or np.any(counts != np.round(counts)):
            raise NolbError("class_counts: every count must be a whole number >= 1")
        return counts.astype(np.int64)

    # ------------------------------------------------------------------ prediction
    def _checked_scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        # float64 in row chunks: a row's scores do not depend on the other rows (float32
        # BLAS kernels round differently for different batch shapes), memory stays bounded.
        chunks = [self._class_scores(np.asarray(X[i : i + _CHUNK], dtype=np.float64))
                  for i in range(0, X.shape[0], _CHUNK)]
        return np.concatenate(chunks) if chunks else np.empty((0, self.classes_.size))

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw class scores (logits), shape (n_samples, n_classes); (n_samples,) for two
        classes (the score of ``classes_[1]`` minus that of ``classes_[0]``)."""
        scores = self._checked_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of the class scores, shape (n_samples, n_classes)."""
        scores = self._checked_scores(X).astype(np.float64)
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        return scores / scores.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        return np.log(np.clip(self.predict_proba(X), np.finfo(np.float64).tiny, None))

    def predict(self, X: Any) -> np.ndarray:
        """The arg-max class (a label from ``classes_``)."""
        scores = self._checked_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]
