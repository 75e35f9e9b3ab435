"""`fit_linear_head`: the plain-tensor entry trains through the same loop as the pipeline."""

import pytest
import torch

from nolb.errors import NolbError
from nolb.retrain import HeadSettings, fit_linear_head
from nolb.retrain.heads import train_head
from nolb.retrain.scoring import per_class_recall
from retrain_synthetic import long_tailed_problem

SETTINGS = HeadSettings(epochs=4, batch_size=64, lr=0.1, init="fresh")


def test_plain_tensors_give_the_same_head_as_the_pipeline_loop():
    train, val, _, counts, _ = long_tailed_problem()
    fit = fit_linear_head(train.features, train.labels, counts, SETTINGS)
    same = train_head(SETTINGS, train, counts, None)
    assert torch.equal(fit.module.weight, same.head.weight) and torch.equal(fit.module.bias, same.head.bias)
    assert fit.settings == SETTINGS and fit.module(train.features[:3].float()).shape == (3, len(counts))


def test_no_original_head_means_a_fresh_start():
    train, _, _, counts, _ = long_tailed_problem()
    fit = fit_linear_head(train.features, train.labels, counts, HeadSettings(epochs=1))
    assert fit.settings.init == "fresh"


def test_selection_on_validation_lifts_the_tail_over_plain_ce():
    train, val, test, counts, _ = long_tailed_problem()
    ce = fit_linear_head(train.features, train.labels, counts, HeadSettings(method="ce", epochs=4, init="fresh"))
    chosen = fit_linear_head(train.features, train.labels, counts, SETTINGS, val_features=val.features,
                             val_labels=val.labels, select=True)
    assert len(chosen.details["selection_table"]) == 12  # tau x lr x sampler of the default grid
    C = len(counts)
    tail = lambda head: float(per_class_recall(head(test.features.float()), test.labels, C)[-1])  # noqa: E731
    assert tail(chosen.module) >= tail(ce.module)


def test_bad_shapes_and_missing_validation_are_refused():
    train, _, _, counts, _ = long_tailed_problem()
    with pytest.raises(NolbError, match="features must be"):
        fit_linear_head(train.features[:, 0], train.labels, counts, SETTINGS)
    with pytest.raises(NolbError, match="val_features"):
        fit_linear_head(train.features, train.labels, counts, SETTINGS, select=True)
