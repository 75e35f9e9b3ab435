"""CrossEntropyLoss, BalancedSoftmaxLoss and LogitAdjustedLoss against naive per-sample loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nolb.losses import BalancedSoftmaxLoss, CrossEntropyLoss, LogitAdjustedLoss

COUNTS = torch.tensor([50, 20, 9, 4, 1])


def _batch(dtype: torch.dtype, seed: int = 0, n: int = 12):
    generator = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, len(COUNTS), generator=generator)).to(dtype)
    target = torch.randint(0, len(COUNTS), (n,), generator=generator)
    return logits.requires_grad_(True), target


def naive_cross_entropy(logits, target, shift=None, weight=None):
    """Loop over samples: -log(exp(a_y) / sum_k exp(a_k)), a = z + shift; weighted mean."""
    total, norm = 0.0, 0.0
    for i in range(logits.shape[0]):
        a = logits[i] if shift is None else logits[i] + shift
        y = int(target[i])
        loss_i = -(a[y] - torch.log(sum(torch.exp(a[k]) for k in range(a.shape[0]))))
        w = 1.0 if weight is None else float(weight[y])
        total = total + w * loss_i
        norm += w
    return total / norm


def _compare(loss, reference, dtype):
    logits, target = _batch(dtype)
    ours = loss(logits, target)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    expected = reference(logits, target)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours, expected.to(ours.dtype), **tol)
    torch.testing.assert_close(grad_ours, grad_expected, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_matches_loop(dtype):
    _compare(CrossEntropyLoss(COUNTS), naive_cross_entropy, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weighted_cross_entropy_matches_loop(dtype):
    weight = [0.5, 1.0, 2.0, 3.0, 4.0]
    _compare(CrossEntropyLoss(COUNTS, weight=weight), lambda z, y: naive_cross_entropy(z, y, weight=weight), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_balanced_softmax_matches_loop(dtype):
    log_n = torch.tensor([math.log(c) for c in COUNTS.tolist()], dtype=dtype)
    _compare(BalancedSoftmaxLoss(COUNTS), lambda z, y: naive_cross_entropy(z, y, shift=log_n), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [0.0, 0.5, 2.0])
def test_logit_adjusted_matches_loop(dtype, tau):
    total = float(COUNTS.sum())
    shift = torch.tensor([tau * math.log(c / total) for c in COUNTS.tolist()], dtype=dtype)
    _compare(LogitAdjustedLoss(COUNTS, tau=tau), lambda z, y: naive_cross_entropy(z, y, shift=shift), dtype)


def test_balanced_softmax_is_cross_entropy_on_shifted_logits():
    logits, target = _batch(torch.float64, seed=3)
    expected = F.cross_entropy(logits + COUNTS.double().log(), target)
    torch.testing.assert_close(BalancedSoftmaxLoss(COUNTS)(logits, target), expected)


def test_logit_adjusted_with_tau_one_equals_balanced_softmax():
    logits, target = _batch(torch.float64, seed=4)
    adjusted = LogitAdjustedLoss(COUNTS, tau=1.0)(logits, target)
    torch.testing.assert_close(adjusted, BalancedSoftmaxLoss(COUNTS)(logits, target))


def test_logit_adjusted_with_tau_zero_is_plain_cross_entropy_and_allows_zero_counts():
    logits, target = _batch(torch.float64, seed=5)
    counts = torch.tensor([3, 0, 2, 1, 7])
    torch.testing.assert_close(LogitAdjustedLoss(counts, tau=0.0)(logits, target), F.cross_entropy(logits, target))


@pytest.mark.parametrize("loss", [BalancedSoftmaxLoss(COUNTS), LogitAdjustedLoss(COUNTS, tau=0.7)], ids=["bsce", "la"])
def test_gradcheck_fp64(loss):
    logits, target = _batch(torch.float64, seed=6, n=6)
    assert torch.autograd.gradcheck(lambda z: loss(z, target), (logits,))
