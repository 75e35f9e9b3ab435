import numpy as np
import pytest
import torch
from torch import nn

from nolb.metrics import recall_report
from nolb.retrain.heads import train_head
from nolb.retrain.settings import HeadSettings, baseline_settings
from nolb.retrain.lws import LearnableWeightScaling
from nolb.retrain.tau_norm import select_tau, tau_normalized_head
from retrain_synthetic import head_biased_classifier, long_tailed_problem


def test_tau_normalisation_matches_a_per_class_loop():
    head = nn.Linear(4, 3)
    x = torch.randn(7, 4)
    for tau in (0.0, 0.5, 1.0, 1.7):
        new = tau_normalized_head(head, tau)
        expected = np.zeros((7, 3))
        for c in range(3):
            w = head.weight[c].detach().numpy().astype(np.float64)
            expected[:, c] = x.numpy().astype(np.float64) @ (w / np.linalg.norm(w) ** tau)
        np.testing.assert_allclose(new(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    unit = tau_normalized_head(head, 1.0)
    assert torch.allclose(unit.weight.norm(dim=1), torch.ones(3))


def test_select_tau_returns_the_hm_argmax_of_a_naive_search():
    _, val, _, counts, means = long_tailed_problem()
    biased = head_biased_classifier(means, counts, bias_strength=0.0)
    with torch.no_grad():  # large norms on head classes, as long-tailed training produces
        biased.weight.mul_(counts.float().sqrt()[:, None] / 4)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5]
    tau, score, table = select_tau(biased, val.features, val.labels, 5, grid)
    naive = []
    for candidate in grid:
        w = biased.weight.detach().double()
        logits = val.features.double() @ (w / w.norm(dim=1, keepdim=True) ** candidate).t()
        report = recall_report(val.labels.numpy(), logits.numpy(), num_classes=5)
        naive.append((report.hm, report.am, -candidate))
    assert tau == -max(naive)[2]
    assert score.hm == pytest.approx(max(naive)[0])
    assert [row["tau"] for row in table] == grid


def test_lws_forward_and_folding_match_the_naive_formula():
    head = nn.Linear(4, 3)
    lws = LearnableWeightScaling(head)
    with torch.no_grad():
        lws.scales.copy_(torch.tensor([0.5, 2.0, 1.5]))
    x = torch.randn(6, 4)
    naive = torch.stack([lws.scales[c] * (x @ head.weight[c] + head.bias[c]) for c in range(3)], 1)
    assert torch.allclose(lws(x), naive, atol=1e-6)
    assert torch.allclose(lws.to_linear()(x), naive, atol=1e-6)
    assert [name for name, p in lws.named_parameters() if p.requires_grad] == ["scales"]


def test_lws_learns_only_the_scales_and_lifts_the_tail():
    train, val, test, counts, means = long_tailed_problem()
    biased = head_biased_classifier(means, counts, bias_strength=0.0)
    with torch.no_grad():
        biased.weight.mul_(counts.float().log()[:, None])
        biased.bias.zero_()
    settings = baseline_settings("lws", HeadSettings(lr=0.1, epochs=5, batch_size=64))
    trained = train_head(settings, train, counts, biased, val)
    ratio = trained.head.weight / biased.weight
    # every row of the new weight is the old row times one scalar
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-4)
    scales = ratio[:, 0]
    assert scales[-1] > scales[0]  # the rarest class is scaled up relative to the most frequent
