"""Worst-class scorers against independent references (imblearn, scipy, a naive loop)."""

from __future__ import annotations

import numpy as np
import pytest
from imblearn.metrics import geometric_mean_score
from scipy.stats import hmean
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.model_selection import GridSearchCV

import nolb
from nolb.metrics import scorers


def _random_labels(seed, n=300, classes=7):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, classes, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, classes, n))
    y_pred[y_true == classes - 1] = 0  # one class with recall 0
    return y_true, y_pred


def _naive_recalls(y_true, y_pred):
    out = []
    for c in sorted(set(y_true.tolist())):
        rows = [i for i in range(len(y_true)) if y_true[i] == c]
        out.append(sum(y_pred[i] == c for i in rows) / len(rows))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_references(seed):
    y_true, y_pred = _random_labels(seed)
    recalls = recall_score(y_true, y_pred, average=None)
    np.testing.assert_allclose(scorers.per_class_recall(y_true, y_pred), recalls)
    floored = np.where(recalls == 0, 1e-3, recalls)
    assert scorers.hm_score(y_true, y_pred) == pytest.approx(hmean(floored))
    assert scorers.gm_score(y_true, y_pred) == pytest.approx(geometric_mean_score(y_true, y_pred, correction=1e-3))
    assert scorers.lowest_recall_score(y_true, y_pred) == pytest.approx(min(_naive_recalls(y_true, y_pred)))
    assert scorers.num_zero_recall(y_true, y_pred) == sum(r == 0 for r in _naive_recalls(y_true, y_pred))


def test_string_labels_and_label_subset():
    y_true = np.array(["cat", "cat", "dog", "dog", "eel", "eel"])
    y_pred = np.array(["cat", "dog", "dog", "dog", "cat", "cat"])
    assert scorers.lowest_recall_score(y_true, y_pred) == 0.0
    assert scorers.hm_score(y_true, y_pred) == pytest.approx(hmean([0.5, 1.0, 1e-3]))
    assert scorers.hm_score(y_true, y_pred, labels=["cat", "dog"]) == pytest.approx(hmean([0.5, 1.0]))


def test_grid_search_with_scorer_objects():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (80, 3)), rng.normal(2, 1, (20, 3)), rng.normal(-2, 1, (10, 3))])
    y = np.repeat(["a", "b", "c"], [80, 20, 10])
    grid = {"C": [0.01, 1.0]}
    by_object = GridSearchCV(LogisticRegression(), grid, scoring=nolb.scorers["hm"], cv=3).fit(X, y)
    multi = GridSearchCV(LogisticRegression(), grid, scoring=scorers.all_scorers(), refit="hm", cv=3).fit(X, y)
    assert by_object.best_params_ == multi.best_params_
    np.testing.assert_allclose(by_object.cv_results_["mean_test_score"], multi.cv_results_["mean_test_hm"])
    assert np.all(multi.cv_results_["mean_test_num_zero_recall"] <= 0)  # negated: lower is better
    # the scorer's value is hm_score of the predictions
    model = LogisticRegression().fit(X, y)
    assert nolb.scorers["hm"](model, X, y) == pytest.approx(scorers.hm_score(y, model.predict(X)))


def test_bad_input_is_one_line_error():
    with pytest.raises(nolb.errors.NolbError, match="y_pred"):
        scorers.hm_score([0, 1], [0])
    with pytest.raises(nolb.errors.NolbError, match="expected one of"):
        scorers.make_scorer("accuracy")


def test_imports_stay_light():
    """`import nolb`, `nolb.metrics` and `nolb.metrics.scorers` do not load scikit-learn."""
    import subprocess
    import sys

    code = ("import sys, nolb, nolb.metrics, nolb.metrics.scorers, nolb.estimators; "
            "assert 'sklearn' not in sys.modules, 'sklearn imported'; "
            "nolb.GMLClassifier; assert 'sklearn' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
