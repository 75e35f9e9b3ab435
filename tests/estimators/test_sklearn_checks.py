"""scikit-learn's own estimator checks for the nolb estimators."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nolb.estimators.linear_head import BalancedRefitClassifier, GMLClassifier, LinearHeadClassifier  # noqa: E402
from nolb.estimators.posthoc import LogitAdjustedClassifier, TauNormClassifier  # noqa: E402


@parametrize_with_checks([GMLClassifier(), LinearHeadClassifier(method="bsce"), BalancedRefitClassifier(),
                          LogitAdjustedClassifier(), TauNormClassifier()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
