from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nolb.errors import NolbError
from nolb.metrics import recall_report
from nolb.retrain.ensemble import Ensemble, ensemble_log_probs, select_temperatures

LOGITS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar100lt-logits"


def _naive_softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("t1,t2", [(1.0, 1.0), (0.5, 2.0), (3.0, 0.75)])
def test_ensemble_probabilities_match_a_naive_computation(t1, t2):
    generator = torch.Generator().manual_seed(0)
    z1, z2 = 5 * torch.randn(9, 4, generator=generator), 5 * torch.randn(9, 4, generator=generator)
    a, b = z1.double().numpy(), z2.double().numpy()
    prob = 0.5 * (_naive_softmax(a / t1) + _naive_softmax(b / t2))
    np.testing.assert_allclose(ensemble_log_probs(z1, z2, t1, t2).exp().numpy(), prob, rtol=1e-5, atol=1e-7)
    geometric = np.sqrt(_naive_softmax(a / t1) * _naive_softmax(b / t2))
    geometric /= geometric.sum(1, keepdims=True)
    np.testing.assert_allclose(ensemble_log_probs(z1, z2, t1, t2, "log").exp().numpy(), geometric, rtol=1e-5, atol=1e-7)


def test_ensemble_module_runs_one_backbone_pass_for_both_heads():
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    calls = []
    backbone.register_forward_hook(lambda *args: calls.append(1))
    head1, head2 = nn.Linear(5, 3), nn.Linear(5, 3)
    model = Ensemble(backbone, head1, head2, t1=0.7, t2=1.3)
    x = torch.randn(4, 3, 2, 2)
    out = model(x)
    assert len(calls) == 1
    features = backbone(x)
    naive = 0.5 * (torch.softmax(head1(features) / 0.7, 1) + torch.softmax(head2(features) / 1.3, 1))
    assert torch.allclose(out.exp(), naive, atol=1e-6)
    with pytest.raises(NolbError, match="temperatures"):
        Ensemble(backbone, head1, head2, t1=0.0)
    with pytest.raises(NolbError, match="space"):
        Ensemble(backbone, head1, head2, space="median")


def _naive_grid_search(z1, z2, labels, num_classes, grid):
    best = None
    for t1 in grid:
        for t2 in grid:
            prob = 0.5 * (_naive_softmax(z1 / t1) + _naive_softmax(z2 / t2))
            report = recall_report(labels, prob, num_classes=num_classes)
            key = (report.hm, report.am)
            if best is None or key > best[0]:
                best = (key, t1, t2)
    return best


def test_temperature_grid_picks_the_hm_argmax_on_synthetic_logits():
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(25)
    z1 = torch.randn(100, 4, generator=generator) + 2.0 * nn.functional.one_hot(labels, 4) + torch.tensor([2.0, 1.0, 0, -1.0])
    z2 = torch.randn(100, 4, generator=generator) + 1.5 * nn.functional.one_hot(labels, 4)
    grid = (0.25, 0.5, 1.0, 2.0, 4.0)
    choice = select_temperatures(z1, z2, labels, 4, grid)
    naive = _naive_grid_search(z1.double().numpy(), z2.double().numpy(), labels.numpy(), 4, grid)
    assert choice.score.hm == pytest.approx(naive[0][0]) and choice.score.am == pytest.approx(naive[0][1])
    assert len(choice.table) == len(grid) ** 2
    assert max(row["hm"] for row in choice.table) == pytest.approx(choice.score.hm)


def test_temperature_selection_on_real_cifar100_lt_logits():
    if not LOGITS.is_dir():
        pytest.skip(f"real logits not found at {LOGITS}")
    val_ce, val_bs = np.load(LOGITS / "ce_val_lt.npz"), np.load(LOGITS / "balsoftmax_val_lt.npz")
    z1, z2 = (torch.from_numpy(d["logits"]).float() for d in (val_ce, val_bs))
    labels = torch.from_numpy(val_ce["labels"]).long()
    assert torch.equal(labels, torch.from_numpy(val_bs["labels"]).long())
    grid = (0.5, 1.0, 2.0)
    choice = select_temperatures(z1, z2, labels, 100, grid)
    naive = _naive_grid_search(z1.double().numpy(), z2.double().numpy(), labels.numpy(), 100, grid)
    assert choice.score.hm == pytest.approx(naive[0][0])
    assert choice.score.am == pytest.approx(naive[0][1])
    chosen = 0.5 * (_naive_softmax(z1.double().numpy() / choice.t1) + _naive_softmax(z2.double().numpy() / choice.t2))
    assert recall_report(labels.numpy(), chosen, num_classes=100).hm == pytest.approx(naive[0][0])
