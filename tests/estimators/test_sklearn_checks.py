"""scikit-learn's own estimator checks for the nolb estimators: every check passes.

``GMLClassifier()``'s default ``init_coef="auto"`` starts from the identity head only when X
reads as a model's scores (``reads_as_scores``); the checks' 2-column, 2-class blobs do not
(their column arg-max predicts the labels no better than chance), so it starts fresh there and
passes ``check_classifiers_train`` like ``init_coef="fresh"`` (before that test of X, the
identity start on those blobs reached 0.37 training accuracy, under the check's 0.83).
"""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nolb.estimators.linear_head import BalancedRefitClassifier, GMLClassifier, LinearHeadClassifier  # noqa: E402
from nolb.estimators.posthoc import LogitAdjustedClassifier, TauNormClassifier  # noqa: E402


@parametrize_with_checks([GMLClassifier(), GMLClassifier(init_coef="fresh"), LinearHeadClassifier(method="bsce"),
                          BalancedRefitClassifier(), LogitAdjustedClassifier(), TauNormClassifier()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
