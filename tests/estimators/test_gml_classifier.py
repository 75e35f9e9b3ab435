"""GMLClassifier and the baseline estimators: pipelines, selection, counts, the shared loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nolb import GMLClassifier
from nolb.errors import NolbError
from nolb.estimators import BalancedRefitClassifier, LinearHeadClassifier, LogitAdjustedClassifier, TauNormClassifier
from nolb.losses import build_loss
from nolb.retrain.head_training import fit_head, linear_head_from


def long_tailed_blobs(seed=0, counts=(120, 60, 25, 10), dim=5, spread=1.2):
    centres = np.random.default_rng(42).normal(0, 2.0, (len(counts), dim))  # the same classes in every split
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(centres[c], spread, (n, dim)) for c, n in enumerate(counts)]).astype(np.float32)
    y = np.repeat(np.arange(len(counts)), counts)
    return X, y


def test_pipeline_with_string_labels():
    X, y = long_tailed_blobs()
    names = np.array(["ant", "bee", "cow", "dog"])[y]
    model = make_pipeline(StandardScaler(), GMLClassifier(epochs=20, lr=0.1)).fit(X, names)
    assert set(model.predict(X)) <= set(names)
    assert model.score(X, names) > 0.7
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert list(model.classes_) == ["ant", "bee", "cow", "dog"]


def test_same_loop_as_stage_two():
    """The estimator's head is exactly what stage 2's fit_head gives for the same settings."""
    X, y = long_tailed_blobs()
    clf = GMLClassifier(prior_strength=0.5, lr=0.05, epochs=3, batch_size=32, standardize=False, random_state=7).fit(X, y)
    counts = torch.tensor(np.bincount(y))
    head = linear_head_from(None, X.shape[1], 4, "fresh", seed=7)
    fit_head(head, torch.from_numpy(X), torch.from_numpy(y), build_loss("gml", counts, prior_strength=0.5),
             num_classes=4, epochs=3, batch_size=32, lr=0.05, weight_decay=2e-4, seed=7, draws_per_epoch=len(y))
    np.testing.assert_allclose(clf.coef_, head.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clf.intercept_, head.bias.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_standardisation_is_folded_into_coef():
    X, y = long_tailed_blobs()
    X = X * 50 + 3
    clf = GMLClassifier(epochs=3).fit(X, y)
    expected = X.astype(np.float64) @ clf.coef_.T + clf.intercept_
    np.testing.assert_allclose(clf.decision_function(X), expected, rtol=1e-4, atol=1e-3)


def test_validation_selection_follows_the_pipeline_rule():
    X, y = long_tailed_blobs(0)
    Xv, yv = long_tailed_blobs(1, counts=(20, 20, 20, 20))
    clf = GMLClassifier(epochs=4, select_lrs=(0.02, 0.1), select_prior_strengths=(0.0, 1.0),
                        select_samplers=("instance",)).fit(X, y, X_val=Xv, y_val=yv)
    table = clf.selection_table_
    assert len(table) == 4
    best = max(range(4), key=lambda i: (table[i]["feasible"], table[i]["rank_hm"], table[i]["rank_am"], -i))
    assert clf.head_settings_["prior_strength"] == table[best]["prior_strength"]
    assert clf.head_settings_["lr"] == table[best]["lr"]
    assert 1 <= clf.best_epoch_ <= 4
    again = GMLClassifier(epochs=4, select_lrs=(0.02, 0.1), select_prior_strengths=(0.0, 1.0),
                          select_samplers=("instance",)).fit(X, y, eval_set=[(Xv, yv)])
    np.testing.assert_array_equal(again.coef_, clf.coef_)


def test_given_class_counts_change_the_prior():
    X, y = long_tailed_blobs()
    from_y = GMLClassifier(epochs=2, standardize=False).fit(X, y)
    given = GMLClassifier(epochs=2, standardize=False, class_counts={0: 1000, 1: 100, 2: 10, 3: 1}).fit(X, y)
    assert list(given.class_counts_) == [1000, 100, 10, 1]
    assert list(from_y.class_counts_) == [120, 60, 25, 10]
    assert not np.allclose(given.coef_, from_y.coef_)


def test_grid_search_over_prior_strength():
    X, y = long_tailed_blobs()
    search = GridSearchCV(GMLClassifier(epochs=3), {"prior_strength": [0.0, 1.0]}, cv=3).fit(X, y)
    assert search.best_params_["prior_strength"] in (0.0, 1.0)


@pytest.mark.parametrize("bad, match", [
    (dict(class_counts=[1, 2]), "class_counts: 2 values for 4 classes"),
    (dict(class_counts=[10, 5, 0, 1]), "whole number >= 1"),
    (dict(select=True), "needs a validation split"),
    (dict(sampler="weird"), "sampler"),
])
def test_bad_settings_raise_one_line_errors(bad, match):
    X, y = long_tailed_blobs()
    with pytest.raises(NolbError, match=match):
        GMLClassifier(epochs=1, **bad).fit(X, y)


def test_validation_labels_must_be_known():
    X, y = long_tailed_blobs()
    with pytest.raises(NolbError, match="y_val: label 9"):
        GMLClassifier(epochs=1).fit(X, y, X_val=X[:3], y_val=[0, 1, 9])


def test_posthoc_logit_adjustment_on_scores_matches_a_direct_computation():
    X, y = long_tailed_blobs()
    Xv, yv = long_tailed_blobs(1, counts=(20, 20, 20, 20))
    scores = make_pipeline(StandardScaler(), GMLClassifier(epochs=5, prior_strength=0.0)).fit(X, y)
    logits, val_logits = scores.decision_function(X), scores.decision_function(Xv)
    la = LogitAdjustedClassifier(estimator="scores").fit(logits, y, X_val=val_logits, y_val=yv)
    prior = np.bincount(y) / len(y)
    np.testing.assert_allclose(la.decision_function(val_logits), val_logits - la.tau_ * np.log(prior), rtol=1e-5)
    assert la.tau_ in [row["tau"] for row in la.tau_table_]
    best = max(la.tau_table_, key=lambda row: (row["hm"], row["am"], -row["tau"]))
    assert la.tau_ == best["tau"]


def test_tau_norm_and_crt_fit_and_predict():
    X, y = long_tailed_blobs()
    Xv, yv = long_tailed_blobs(1, counts=(20, 20, 20, 20))
    tau = TauNormClassifier().fit(X, y, X_val=Xv, y_val=yv)
    norms = np.linalg.norm(tau.estimator_.coef_, axis=1)
    np.testing.assert_allclose(np.linalg.norm(tau.coef_, axis=1), norms ** (1 - tau.tau_), rtol=1e-4)
    crt = BalancedRefitClassifier(epochs=5, lr=0.1).fit(X, y)
    assert crt.head_settings_["sampler"] == "class_balanced" and crt.head_settings_["method"] == "crt"
    assert crt.score(Xv, yv) > 0.5


def test_init_from_a_given_head_with_standardisation():
    """Starting from a head gives that head's scores before training (lr tiny, 1 step)."""
    X, y = long_tailed_blobs()
    rng = np.random.default_rng(3)
    coef, intercept = rng.normal(size=(4, X.shape[1])), rng.normal(size=4)
    clf = GMLClassifier(init_coef=coef, init_intercept=intercept, lr=1e-9, epochs=1, batch_size=len(y)).fit(X * 7 + 2, y)
    np.testing.assert_allclose(clf.coef_, coef, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(clf.intercept_, intercept, rtol=1e-4, atol=1e-4)
    logits = X[:, :4]
    ident = LinearHeadClassifier(method="bsce", init_coef="identity", lr=1e-9, epochs=1).fit(logits, y)
    np.testing.assert_allclose(ident.decision_function(logits), logits, rtol=1e-4, atol=1e-4)
    with pytest.raises(NolbError, match="identity"):
        GMLClassifier(init_coef="identity", epochs=1).fit(X, y)


def test_grid_search_passes_the_validation_split_through():
    X, y = long_tailed_blobs()
    Xv, yv = long_tailed_blobs(1, counts=(20, 20, 20, 20))
    search = GridSearchCV(GMLClassifier(epochs=2, select_samplers=("instance",), select_prior_strengths=(1.0,)),
                          {"batch_size": [32, 64]}, cv=2)
    search.fit(X, y, X_val=Xv, y_val=yv)
    assert len(search.best_estimator_.selection_table_) == 2  # the lr candidates, chosen on (Xv, yv)


def test_random_state_forms():
    X, y = long_tailed_blobs()
    a = GMLClassifier(epochs=1, random_state=5).fit(X, y)
    b = GMLClassifier(epochs=1, random_state=np.random.RandomState(1)).fit(X, y)
    c = GMLClassifier(epochs=1, random_state=5).fit(X, y)
    np.testing.assert_array_equal(a.coef_, c.coef_)
    assert a.head_settings_["seed"] == 5 and 0 <= b.head_settings_["seed"] < 2**31


def test_auto_start_is_identity_on_logits_and_fresh_on_features():
    """init_coef="auto": one column per class -> the model's own scores before training
    (lr ~ 0: the base predictions); any other width -> exactly the fresh head."""
    X, y = long_tailed_blobs()
    rng = np.random.default_rng(0)
    logits = 3.0 * np.eye(4)[y] + rng.normal(size=(len(y), 4))  # a model's scores: arg-max mostly right
    assert GMLClassifier().get_params()["init_coef"] == "auto"  # the default
    auto = GMLClassifier(lr=1e-9, epochs=1).fit(logits, y)
    assert auto.init_ == "identity"
    np.testing.assert_allclose(auto.decision_function(logits), logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(auto.predict(logits), logits.argmax(1))
    fresh_on_logits = GMLClassifier(init_coef="fresh", lr=1e-9, epochs=1).fit(logits, y)
    assert fresh_on_logits.init_ == "fresh"
    assert np.abs(fresh_on_logits.decision_function(logits) - logits).max() > 0.1
    wide = [GMLClassifier(init_coef=init, epochs=2).fit(X, y) for init in ("auto", "fresh", None)]
    assert [clf.init_ for clf in wide] == ["fresh"] * 3
    for clf in wide[1:]:
        np.testing.assert_array_equal(clf.coef_, wide[0].coef_)
        np.testing.assert_array_equal(clf.intercept_, wide[0].intercept_)
    with pytest.raises(NolbError, match="init_intercept"):
        GMLClassifier(init_coef="fresh", init_intercept=np.zeros(4), epochs=1).fit(X, y)
    with pytest.raises(NolbError, match="init_coef='zeros'"):
        GMLClassifier(init_coef="zeros", epochs=1).fit(logits, y)


def test_auto_start_is_fresh_on_embeddings_with_one_column_per_class():
    """Four columns for four classes that are not scores (arg-max at chance): "auto" starts fresh."""
    from nolb.estimators.linear_head import reads_as_scores

    X, y = long_tailed_blobs()
    rng = np.random.default_rng(1)
    embeddings = rng.normal(size=(len(y), 4))
    scores = 3.0 * np.eye(4)[y] + rng.normal(size=(len(y), 4))
    assert not reads_as_scores(embeddings, y, 4) and reads_as_scores(scores, y, 4)
    assert not reads_as_scores(scores, y, 5)  # one column per class, or never
    assert GMLClassifier(epochs=1).fit(embeddings, y).init_ == "fresh"
    assert GMLClassifier(epochs=1).fit(scores, y).init_ == "identity"
