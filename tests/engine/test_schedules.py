"""Learning-rate schedules against independent references (hand rules, torch's schedulers)."""

from __future__ import annotations

import math

import pytest
import torch

from nolb.engine.schedules import EpochSchedule


def test_cifar_lt_recipe_warmup_then_steps():
    schedule = EpochSchedule(lr=0.1, epochs=200, kind="multistep", warmup_epochs=5, milestones=(160, 180), gamma=0.1)
    for epoch in range(200):
        if epoch < 5:
            expected = 0.1 * (epoch + 1) / 5  # LDAM-DRW: lr * epoch / 5 with 1-based epochs
        elif epoch < 160:
            expected = 0.1
        elif epoch < 180:
            expected = 0.01
        else:
            expected = 0.001
        assert schedule.lr_at(epoch) == pytest.approx(expected, rel=1e-12), epoch


def test_cosine_matches_torch_cosine_annealing():
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=0.2)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30, eta_min=0.01)
    schedule = EpochSchedule(lr=0.2, epochs=30, kind="cosine", min_lr=0.01)
    for epoch in range(30):
        assert schedule.lr_at(epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
        optimizer.step()
        reference.step()


def test_cosine_after_warmup_and_apply_sets_groups():
    schedule = EpochSchedule(lr=1.0, epochs=12, kind="cosine", warmup_epochs=2)
    assert schedule.lr_at(0) == pytest.approx(0.5)
    assert schedule.lr_at(2) == pytest.approx(1.0)
    assert schedule.lr_at(7) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD([{"params": [model.weight]}, {"params": [model.bias]}], lr=9.0)
    assert schedule.apply(optimizer, 0) == pytest.approx(0.5)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5, 0.5]
