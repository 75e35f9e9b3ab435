"""train_one_epoch reads the loss every ``check_every`` steps: same mean loss, NaN step named exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nolb.engine.loop import NonFiniteLoss, train_one_epoch
from nolb.engine.precision import make_grad_scaler


class _Scripted(nn.Module):
    """Cross-entropy, turned NaN at the given 0-based calls."""

    def __init__(self, nan_at: set[int]) -> None:
        super().__init__()
        self.nan_at, self.calls = nan_at, 0

    def forward(self, logits, target):
        loss = nn.functional.cross_entropy(logits, target)
        self.calls += 1
        return loss * float("nan") if self.calls - 1 in self.nan_at else loss


def _run(check_every: int, nan_at: set[int] = frozenset(), steps: int = 7):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(steps)]
    loss_fn = _Scripted(set(nan_at))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    device = torch.device("cpu")
    stats = train_one_epoch(model, batches, loss_fn, optimizer, make_grad_scaler(device, "fp32"), device=device,
                            check_every=check_every)
    return stats, model


@pytest.mark.parametrize("check_every", [2, 3, 50])
def test_deferred_read_gives_the_per_step_mean_loss(check_every):
    every_step, model_a = _run(1)
    deferred, model_b = _run(check_every)
    # naive reference: the mean of the per-step losses, recomputed by hand
    torch.manual_seed(0)
    ref = nn.Linear(4, 3)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(7):
        x, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
        loss = nn.functional.cross_entropy(ref(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert every_step.loss == pytest.approx(sum(losses) / 7, rel=1e-6)
    assert deferred.loss == pytest.approx(every_step.loss, rel=1e-6)
    assert deferred.steps == 7
    assert torch.equal(model_a.weight, model_b.weight)


@pytest.mark.parametrize("check_every,nan_at,step", [(1, {4}, 4), (3, {4}, 4), (3, {6}, 6), (50, {2, 5}, 2), (4, {0}, 0)])
def test_non_finite_loss_names_the_first_bad_step(check_every, nan_at, step):
    with pytest.raises(NonFiniteLoss) as err:
        _run(check_every, nan_at)
    assert err.value.step == step
