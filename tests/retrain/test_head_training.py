import math

import pytest
import torch
from torch import nn

from nolb.errors import NolbError
from nolb.losses import build_loss
from nolb.models import NormedLinear
from nolb.retrain.heads import train_head
from nolb.retrain.settings import HeadSettings
from nolb.retrain.head_training import cosine_lr, epoch_indices, fit_head, linear_head_from
from nolb.retrain.scoring import head_logits, validation_score
from retrain_synthetic import head_biased_classifier, long_tailed_problem


def test_instance_sampler_is_a_permutation_and_class_balanced_is_uniform_over_classes():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    generator = torch.Generator().manual_seed(0)
    order = epoch_indices(labels, 1000, "instance", 3, generator)
    assert sorted(order.tolist()) == list(range(1000))
    draws = 30000
    balanced = epoch_indices(labels, draws, "class_balanced", 3, generator)
    frequencies = torch.bincount(labels[balanced], minlength=3).double() / draws
    # each class has probability 1/3; 5 standard deviations of a binomial proportion
    assert torch.allclose(frequencies, torch.full((3,), 1 / 3, dtype=torch.float64), atol=5 * math.sqrt(2 / 9 / draws))
    # within a class every row is equally likely: the rarest class's 10 rows all appear
    assert set(balanced[labels[balanced] == 2].tolist()) == set(range(990, 1000))
    root = epoch_indices(labels, draws, "sqrt", 3, generator)
    expected = torch.tensor([30.0, 90**0.5, 10**0.5], dtype=torch.float64)
    expected /= expected.sum()
    observed = torch.bincount(labels[root], minlength=3).double() / draws
    assert torch.allclose(observed, expected, atol=0.01)


def test_cosine_schedule_matches_formula():
    assert cosine_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 25, 100) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))


def test_fit_head_keeps_the_best_evaluated_epoch():
    train, *_ = long_tailed_problem()
    head = nn.Linear(8, 5)
    snapshots = []
    scores = iter([0.1, 0.9, 0.3, 0.2])

    def evaluate(module):
        snapshots.append({k: v.clone() for k, v in module.state_dict().items()})
        return (next(scores),)

    fit = fit_head(head, train.features, train.labels, nn.CrossEntropyLoss(), num_classes=5, epochs=4,
                   batch_size=64, lr=0.1, evaluate=evaluate)
    assert fit.best_epoch == 2 and fit.best_score == (0.9,)
    assert torch.equal(fit.module.weight, snapshots[1]["weight"])
    assert len(fit.history) == 4


def test_gml_retraining_raises_hm_over_a_head_biased_classifier():
    train, val, test, counts, means = long_tailed_problem()
    biased = head_biased_classifier(means, counts)
    before = validation_score(head_logits(biased, test.features), test.labels, 5)
    settings = HeadSettings(method="gml", prior_strength=1.0, lr=0.1, epochs=10, batch_size=64)
    trained = train_head(settings, train, counts, biased, val)
    after = validation_score(head_logits(trained.head, test.features), test.labels, 5)
    assert after.hm > before.hm + 0.1
    assert after.lowest > before.lowest
    assert isinstance(trained.head, nn.Linear) and not trained.head.weight.requires_grad
    # the original head is untouched (it is kept for the ensemble)
    assert torch.equal(biased.weight, head_biased_classifier(means, counts).weight)


def test_training_is_reproducible_from_the_seed():
    train, val, _, counts, means = long_tailed_problem()
    settings = HeadSettings(method="ce", lr=0.05, epochs=2, batch_size=32, seed=3)
    first = train_head(settings, train, counts, head_biased_classifier(means, counts))
    second = train_head(settings, train, counts, head_biased_classifier(means, counts))
    assert torch.equal(first.head.weight, second.head.weight)


def test_gml_with_zero_prior_equals_plain_softmax_gml_on_equal_counts():
    train, _, _, counts, means = long_tailed_problem()
    original = head_biased_classifier(means, counts)
    x, y = train.features[:64].float(), train.labels[:64]
    with_prior = build_loss("gml", counts, prior_strength=0.0)(original(x), y)
    equal_counts = build_loss("gml", torch.ones_like(counts), prior_strength=1.0)(original(x), y)
    assert torch.allclose(with_prior, equal_counts)


def test_head_initialisation():
    original = nn.Linear(8, 5)
    copied = linear_head_from(original, 8, 5, "original")
    assert torch.equal(copied.weight, original.weight) and copied.weight is not original.weight
    fresh = linear_head_from(original, 8, 5, "fresh", seed=1)
    assert not torch.equal(fresh.weight, original.weight)
    assert torch.count_nonzero(fresh.bias) == 0
    with pytest.raises(NolbError, match="init=fresh"):
        linear_head_from(NormedLinear(8, 5), 8, 5, "original")
    with pytest.raises(NolbError, match="init"):
        linear_head_from(original, 8, 5, "random")


def test_bad_settings_raise_one_line_errors():
    train, _, _, counts, means = long_tailed_problem()
    with pytest.raises(NolbError, match="method"):
        train_head(HeadSettings(method="svm"), train, counts, None)
    with pytest.raises(NolbError, match="lr"):
        train_head(HeadSettings(method="ce", lr=0.0), train, counts, head_biased_classifier(means, counts))
    with pytest.raises(NolbError, match="validation"):
        train_head(HeadSettings(method="tau_norm"), train, counts, head_biased_classifier(means, counts))
