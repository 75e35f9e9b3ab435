"""scikit-learn's own estimator checks for the nolb estimators.

One documented exception: ``GMLClassifier()``'s default ``init_coef="auto"`` starts from the
identity head when X has one column per class (a model's logits).  ``check_classifiers_train``
fits 2-column blobs with 2 classes, so ``"auto"`` starts there from "predict the larger
coordinate", which is not a score of these blobs, and 20 SGD steps (200 rows, batch 128,
10 epochs) do not undo it: training accuracy 0.37 (the identity head alone: 0.11; fresh: 0.97;
"auto" with 100 epochs: 0.97), under the check's 0.83.  The same estimator
with ``init_coef="fresh"`` passes every check, that one included.
"""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from nolb.estimators.linear_head import BalancedRefitClassifier, GMLClassifier, LinearHeadClassifier  # noqa: E402
from nolb.estimators.posthoc import LogitAdjustedClassifier, TauNormClassifier  # noqa: E402

AUTO_START_ON_BLOBS = ("init_coef='auto' starts from the identity head on 2-column, 2-class blobs "
                       "(not scores); see the module docstring")


def expected_failures(estimator) -> dict:
    if isinstance(estimator, GMLClassifier) and estimator.init_coef == "auto":
        return {"check_classifiers_train": AUTO_START_ON_BLOBS}
    return {}


@parametrize_with_checks([GMLClassifier(), GMLClassifier(init_coef="fresh"), LinearHeadClassifier(method="bsce"),
                          BalancedRefitClassifier(), LogitAdjustedClassifier(), TauNormClassifier()],
                         expected_failed_checks=expected_failures, xfail_strict=True)
def test_sklearn_compatible(estimator, check):
    check(estimator)
