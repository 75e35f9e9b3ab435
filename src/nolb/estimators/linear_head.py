"""Linear heads on any feature matrix, trained by stage 2's loop: GML and the cRT baseline.

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from nolb import GMLClassifier

    clf = GMLClassifier().fit(X_train, y_train, X_val=X_val, y_val=y_val)
    clf.predict(X_test)

:class:`GMLClassifier` fits ``z = x W^T + b`` with the Geometric Mean Loss
(``softmax(z + tau log n)``, METHOD.md section 4) through
:func:`nolb.estimators._head_loop.fit_linear_head`, i.e. the same SGD loop, sampler and
cosine schedule as ``nolb run``'s stage 2.  Given a validation split (``X_val``/``y_val``
or ``eval_set``) it chooses the prior strength, lr, sampler and epoch there with the
pipeline's rule (soft HM, then soft AM).  :class:`BalancedRefitClassifier` is cRT (Kang
et al. 2020): a fresh head, cross-entropy, class-balanced sampling.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from nolb.errors import NolbError
from nolb.estimators._base import ScoreClassifier

SAMPLERS = ("instance", "class_balanced", "sqrt")


class _LinearHeadClassifier(ScoreClassifier):
    """Shared fit of the trained linear heads; ``_method`` names the loss."""

    _method = "gml"

    def _fit_head(self, X: Any, y: Any, X_val: Any, y_val: Any, eval_set: Any, select: bool):
        import torch

        from nolb.estimators._head_loop import fit_linear_head

        X, codes = self._encode_fit_data(X, y)
        validation = self._validation_data(X_val, y_val, eval_set)
        counts = self._training_counts(codes)
        if self.sampler not in SAMPLERS:
            raise NolbError(f"{type(self).__name__}: sampler {self.sampler!r}, expected one of {SAMPLERS}")
        mean, scale = _standardisation(X) if self.standardize else (None, None)
        seed = self.random_state if isinstance(self.random_state, (int, np.integer)) else (
            check_random_state(self.random_state).randint(2**31 - 1))
        settings = {
            "method": getattr(self, "method", self._method), "prior_strength": float(self.prior_strength),
            "lr": float(self.lr),
            "epochs": int(self.epochs), "batch_size": int(self.batch_size), "weight_decay": float(self.weight_decay),
            "momentum": float(self.momentum), "sampler": self.sampler, "init": "fresh", "seed": int(seed),
            "matmul_dtype": self.matmul_dtype,
        }
        val_x = val_y = None
        if validation is not None:
            val_x = torch.from_numpy(_apply(validation[0], mean, scale))
            val_y = torch.from_numpy(validation[1])
        elif select:
            raise NolbError(f"{type(self).__name__}: select=True needs a validation split (X_val, y_val or eval_set)")
        grid = {}
        if select:
            grid = {"prior_strengths": tuple(self.select_prior_strengths), "lrs": tuple(self.select_lrs),
                    "samplers": tuple(self.select_samplers), "criterion": self.selection_criterion}
        fitted = fit_linear_head(
            torch.from_numpy(_apply(X, mean, scale)), torch.from_numpy(codes), torch.from_numpy(counts), settings,
            val_features=val_x, val_labels=val_y, select=select, init_head=self._initial_head(X, codes, mean, scale),
            **grid,
        )
        coef, intercept = fitted.coef, fitted.intercept
        if mean is not None:  # fold the standardisation into the head: scores = X coef^T + intercept
            coef = coef / scale
            intercept = intercept - coef @ mean
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = intercept.astype(np.float32)
        self.class_counts_ = counts
        self.head_settings_ = fitted.settings
        self.best_epoch_ = fitted.best_epoch
        self.val_score_ = fitted.val_score
        self.selection_table_ = fitted.selection_table
        return self

    def _initial_head(self, X: np.ndarray, codes: np.ndarray, mean, scale) -> tuple[np.ndarray, np.ndarray] | None:
        """``init_coef``/``init_intercept`` as a head on the (standardised) training features;
        None for a fresh head.  Sets ``init_`` to the start used: fresh, identity or given."""
        init = getattr(self, "init_coef", None)
        num_features, num_classes = X.shape[1], self.classes_.size
        if isinstance(init, str) and init == "auto":
            init = "identity" if reads_as_scores(X, codes, num_classes) else "fresh"
        if init is None or (isinstance(init, str) and init == "fresh"):
            if getattr(self, "init_intercept", None) is not None:
                raise NolbError(f"{type(self).__name__}: init_intercept needs init_coef (a head to start from)")
            self.init_ = "fresh"
            return None
        if isinstance(init, str):
            if init != "identity" or num_features != num_classes:
                raise NolbError(f"{type(self).__name__}: init_coef={init!r}; expected 'auto', 'fresh', None, an array, "
                                f"or 'identity' for X holding one score per class ({num_classes} columns, got "
                                f"{num_features})")
            coef = np.eye(num_classes, dtype=np.float64)
            self.init_ = "identity"
        else:
            coef = np.asarray(init, dtype=np.float64)
            if coef.shape != (num_classes, num_features):
                raise NolbError(f"{type(self).__name__}: init_coef has shape {coef.shape}, "
                                f"expected ({num_classes}, {num_features})")
            self.init_ = "given"
        given = getattr(self, "init_intercept", None)
        intercept = np.zeros(num_classes) if given is None else np.asarray(given, np.float64)
        if intercept.shape != (num_classes,):
            raise NolbError(f"{type(self).__name__}: init_intercept has shape {intercept.shape}, expected ({num_classes},)")
        if mean is not None:  # the same scores on standardised features
            intercept = intercept + coef @ mean
            coef = coef * scale
        return coef.astype(np.float32), intercept.astype(np.float32)

    def _class_scores(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef_.T.astype(X.dtype) + self.intercept_.astype(X.dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class GMLClassifier(_LinearHeadClassifier):
    """A linear classifier trained with the Geometric Mean Loss, for any feature matrix.

    Parameters:
        prior_strength: tau in ``softmax(z + tau log n)`` (1 = the paper's GML, 0 = plain softmax).
        lr: peak learning rate of the cosine schedule (SGD, momentum ``momentum``).
        epochs: epochs; each draws ``n_samples`` rows with ``sampler``.
        batch_size: rows per SGD step.
        weight_decay, momentum: SGD settings.
        sampler: ``"instance"``, ``"class_balanced"`` or ``"sqrt"``.
        standardize: train on standardised features (the fitted ``coef_`` and ``intercept_``
            still apply to the raw features).
        class_counts: the training counts n_c of GML's prior, in ``classes_`` order or as a
            ``{label: count}`` dict; default: counted from ``y``.
        init_coef, init_intercept: where training starts.  ``"auto"`` (default): from the
            model (``"identity"``) when ``X`` reads as a model's scores or logits (one column
            per class whose arg-max already predicts ``y``: :func:`reads_as_scores`), and
            from a fresh head otherwise.  ``"identity"``: the
            identity head (X must have one column per class).  ``"fresh"`` or None: a fresh
            head (the default before the many-class study).  An array: this linear head ((C, D)
            weights in ``classes_`` order, optional (C,) ``init_intercept``; stage 2's
            ``init="original"``), e.g. the classifier that produced the features.  Embeddings that
            merely have as many columns as there are classes start fresh under ``"auto"``.
        select: "auto" (default) chooses tau, lr, sampler and epoch on the validation split
            when one is passed to ``fit`` and trains the given settings otherwise; True
            requires a validation split; False never selects.
        select_prior_strengths, select_lrs, select_samplers, selection_criterion: the
            candidates and criterion of the selection (stage 2's ``select_head``).
        matmul_dtype: ``"float32"`` or ``"bfloat16"`` (faster on AMX CPUs).
        random_state: seeds the initialisation and the row order (an int, a
            ``numpy.random.RandomState`` or None, as in scikit-learn).

    Why ``"auto"``: on three CIFAR-100-LT models' logits (fitted on their training outputs,
    chosen on one half of val_lt, scored on the other, 5 seeded splits; test_lt not read) the
    identity start beat the fresh head on every model (mean over the 15 splits: AM 45.2 vs
    38.2 %, GM 15.1 vs 11.3 %; results/cifar100lt_logits/dev_summary.json, by
    experiments/cifar100_logits_dev.py).  It is level with post-hoc logit adjustment on the
    balanced-loss models but behind it on the plain-CE model there (AM -3.6 points); on such
    a model's logits compare with ``LogitAdjustedClassifier("scores")`` (docs/QUALITY.md,
    "Many classes", by experiments/cifar100_logits_study.py).

    Attributes:
        classes_, n_features_in_, coef_ (C, D), intercept_ (C,), class_counts_,
        head_settings_ (the settings of the kept head), best_epoch_, val_score_ (the
        validation HM/AM of the kept head, or None), selection_table_ (one row per candidate),
        init_ (the start used: ``"fresh"``, ``"identity"`` or ``"given"``).
    """

    _method = "gml"

    def __init__(
        self,
        prior_strength: float = 1.0,
        lr: float = 0.02,
        epochs: int = 10,
        batch_size: int = 128,
        weight_decay: float = 2e-4,
        momentum: float = 0.9,
        sampler: str = "instance",
        standardize: bool = True,
        class_counts: Any = None,
        init_coef: Any = "auto",
        init_intercept: Any = None,
        select: Any = "auto",
        select_prior_strengths: tuple = (0.0, 0.5, 1.0),
        select_lrs: tuple = (0.02, 0.1),
        select_samplers: tuple = ("instance", "class_balanced"),
        selection_criterion: str = "soft_hm",
        matmul_dtype: str = "float32",
        random_state: Any = 0,
    ) -> None:
        self.prior_strength = prior_strength
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.sampler = sampler
        self.standardize = standardize
        self.class_counts = class_counts
        self.init_coef = init_coef
        self.init_intercept = init_intercept
        self.select = select
        self.select_prior_strengths = select_prior_strengths
        self.select_lrs = select_lrs
        self.select_samplers = select_samplers
        self.selection_criterion = selection_criterion
        self.matmul_dtype = matmul_dtype
        self.random_state = random_state

    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None, eval_set: Any = None) -> "GMLClassifier":
        """Fit the head on (X, y); with a validation split, choose its settings there (see ``select``)."""
        if self.select not in ("auto", True, False):
            raise NolbError(f"GMLClassifier: select={self.select!r}, expected 'auto', True or False")
        has_val = eval_set is not None or X_val is not None or y_val is not None
        select = self.select is True or (self.select == "auto" and has_val)
        return self._fit_head(X, y, X_val, y_val, eval_set, select=select)


class LinearHeadClassifier(_LinearHeadClassifier):
    """A linear head trained by stage 2's loop with another loss: ``method`` is ``"gml"``,
    ``"bsce"`` (Balanced Softmax CE), ``"ce"`` or ``"crt"`` (CE; pair it with
    ``sampler="class_balanced"``).  No selection (a validation split only scores the head);
    the other parameters are :class:`GMLClassifier`'s (``prior_strength`` is GML's only;
    ``init_coef`` defaults to None, a fresh head, here).
    """

    def __init__(self, method: str = "ce", lr: float = 0.02, epochs: int = 10, batch_size: int = 128,
                 weight_decay: float = 2e-4, momentum: float = 0.9, sampler: str = "instance",
                 standardize: bool = True, class_counts: Any = None, init_coef: Any = None,
                 init_intercept: Any = None, prior_strength: float = 1.0, matmul_dtype: str = "float32",
                 random_state: Any = 0) -> None:
        self.method = method
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.sampler = sampler
        self.standardize = standardize
        self.class_counts = class_counts
        self.init_coef = init_coef
        self.init_intercept = init_intercept
        self.prior_strength = prior_strength
        self.matmul_dtype = matmul_dtype
        self.random_state = random_state

    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None, eval_set: Any = None) -> "LinearHeadClassifier":
        if self.method not in ("gml", "bsce", "ce", "crt"):
            raise NolbError(f"LinearHeadClassifier: method {self.method!r}, expected gml, bsce, ce or crt")
        return self._fit_head(X, y, X_val, y_val, eval_set, select=False)


class BalancedRefitClassifier(_LinearHeadClassifier):
    """cRT (Kang et al. 2020): a fresh linear head, cross-entropy, class-balanced sampling.

    The parameters mean what they mean for :class:`GMLClassifier`; there is no prior and
    no selection (a validation split, when given, only scores the head: ``val_score_``).
    """

    _method = "crt"
    prior_strength = 0.0

    def __init__(
        self,
        lr: float = 0.02,
        epochs: int = 10,
        batch_size: int = 128,
        weight_decay: float = 2e-4,
        momentum: float = 0.9,
        sampler: str = "class_balanced",
        standardize: bool = True,
        matmul_dtype: str = "float32",
        random_state: Any = 0,
    ) -> None:
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.sampler = sampler
        self.standardize = standardize
        self.matmul_dtype = matmul_dtype
        self.random_state = random_state

    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None, eval_set: Any = None) -> "BalancedRefitClassifier":
        return self._fit_head(X, y, X_val, y_val, eval_set, select=False)


def reads_as_scores(X: np.ndarray, codes: np.ndarray, num_classes: int) -> bool:
    """Whether ``X`` reads as a model's scores for these labels: one column per class, and the
    column arg-max already predicts ``codes`` with a balanced accuracy at least halfway from
    chance (1/C) to perfect.  A model's logits on its training images pass easily (the three
    CIFAR-100-LT models of ``../shared/data/cifar100lt-logits``: 0.80-0.89 against 0.505);
    embeddings that merely have as many columns as there are classes score near chance."""
    if X.shape[1] != num_classes or X.shape[0] == 0:
        return False
    predicted = np.asarray(X).argmax(axis=1)
    recalls = [float(np.mean(predicted[codes == c] == c)) for c in np.unique(codes)]
    return float(np.mean(recalls)) >= 0.5 * (1.0 + 1.0 / num_classes)


def _standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (1 where a feature is constant)."""
    mean = X.mean(axis=0, dtype=np.float64)
    scale = X.std(axis=0, dtype=np.float64)
    scale[scale < 1e-12] = 1.0
    return mean.astype(np.float32), scale.astype(np.float32)


def _apply(X: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> np.ndarray:
    if mean is None:
        return np.array(X, dtype=np.float32, copy=not X.flags.writeable, order="C")
    return np.ascontiguousarray((X - mean) / scale, dtype=np.float32)
