"""LDAMLoss (+DRW), FocalLoss, class-balanced weights and LabelAwareSmoothing against naive loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nolb.losses import FocalLoss, LabelAwareSmoothing, LDAMLoss, build_loss, class_balanced_weights

COUNTS = [64, 30, 12, 5, 2]


def _batch(dtype, seed=0, n=12, scale=2.0):
    generator = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, len(COUNTS), generator=generator)).to(dtype)
    target = torch.randint(0, len(COUNTS), (n,), generator=generator)
    return logits.requires_grad_(True), target


def _log_softmax_entry(a, k):
    return a[k] - torch.log(sum(torch.exp(a[j]) for j in range(a.shape[0])))


def naive_cb_weights(counts, beta):
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def naive_ldam(logits, target, counts, weight=None, max_margin=0.5, scale=30.0):
    inverse_quartic = [1 / n**0.25 for n in counts]
    margins = [max_margin * m / max(inverse_quartic) for m in inverse_quartic]
    total, norm = 0.0, 0.0
    for i in range(logits.shape[0]):
        y = int(target[i])
        shifted = torch.stack([logits[i, k] - (margins[k] if k == y else 0.0) for k in range(logits.shape[1])])
        w = 1.0 if weight is None else weight[y]
        total = total - w * _log_softmax_entry(scale * shifted, y)
        norm += w
    return total / norm


def naive_focal(logits, target, gamma, weight=None):
    total, norm = 0.0, 0.0
    for i in range(logits.shape[0]):
        y = int(target[i])
        log_p = _log_softmax_entry(logits[i], y)
        w = 1.0 if weight is None else weight[y]
        total = total - w * (1 - torch.exp(log_p)) ** gamma * log_p
        norm += w
    return total / norm


def naive_smoothing(counts, head, tail, shape, power=None):
    low, high = min(counts), max(counts)
    eps = []
    for n in counts:
        x = (n - low) / (high - low)
        if shape == "concave":
            eps.append(tail + (head - tail) * math.sin(x * math.pi / 2))
        elif shape == "linear":
            eps.append(tail + (head - tail) * x)
        elif shape == "convex":
            eps.append(head + (head - tail) * math.sin(1.5 * math.pi + x * math.pi / 2))
        else:
            eps.append(tail + (head - tail) * x**power)
    return eps


def naive_las(logits, target, eps):
    total = 0.0
    for i in range(logits.shape[0]):
        y = int(target[i])
        log_p = [_log_softmax_entry(logits[i], k) for k in range(logits.shape[1])]
        total = total - (1 - eps[y]) * log_p[y] - eps[y] * sum(log_p) / len(log_p)
    return total / logits.shape[0]


def _assert_matches(loss, reference, dtype, seed=0, scale=2.0):
    logits, target = _batch(dtype, seed=seed, scale=scale)
    ours = loss(logits, target)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    expected = reference(logits, target)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours, expected.to(ours.dtype), **tol)
    torch.testing.assert_close(grad_ours, grad_expected.to(grad_ours.dtype), **tol)


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.9999])
def test_class_balanced_weights_match_formula(beta):
    expected = torch.tensor(naive_cb_weights(COUNTS, beta), dtype=torch.float32)
    torch.testing.assert_close(class_balanced_weights(torch.tensor(COUNTS), beta), expected)


def test_class_balanced_weights_tend_to_inverse_frequency():
    weights = class_balanced_weights(COUNTS, beta=1 - 1e-9).double()
    inverse = torch.tensor([1 / n for n in COUNTS], dtype=torch.float64)
    torch.testing.assert_close(weights, inverse / inverse.sum() * len(COUNTS), rtol=1e-5, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ldam_matches_loop(dtype):
    # cosine logits in [-1, 1]
    _assert_matches(LDAMLoss(COUNTS), lambda z, y: naive_ldam(z, y, COUNTS), dtype, scale=0.4)


def test_ldam_drw_switches_weights_on_at_drw_epoch():
    loss = build_loss("ldam_drw", torch.tensor(COUNTS), drw_epoch=3)
    logits, target = _batch(torch.float64, seed=1, scale=0.4)
    weight = naive_cb_weights(COUNTS, 0.9999)
    for epoch in (0, 2):
        loss.set_epoch(epoch)
        torch.testing.assert_close(loss(logits, target), naive_ldam(logits, target, COUNTS))
    for epoch in (3, 10):
        loss.set_epoch(epoch)
        torch.testing.assert_close(loss(logits, target), naive_ldam(logits, target, COUNTS, weight=weight))
    assert build_loss("ldam_drw", COUNTS).drw_epoch == 160  # the LDAM-DRW recipe: epoch 160 of 200
    plain = build_loss("ldam", COUNTS)
    plain.set_epoch(1000)
    torch.testing.assert_close(plain(logits, target), naive_ldam(logits, target, COUNTS))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_matches_loop(dtype, gamma):
    _assert_matches(FocalLoss(COUNTS, gamma=gamma), lambda z, y: naive_focal(z, y, gamma), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_class_balanced_focal_and_ce_match_loops(dtype):
    weight = naive_cb_weights(COUNTS, 0.999)
    cb_focal = build_loss("cb_focal", COUNTS, beta=0.999, gamma=1.5)
    _assert_matches(cb_focal, lambda z, y: naive_focal(z, y, 1.5, weight), dtype)
    _assert_matches(build_loss("cb", COUNTS, beta=0.999), lambda z, y: naive_focal(z, y, 0.0, weight), dtype)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = _batch(torch.float64, seed=2)
    torch.testing.assert_close(FocalLoss(COUNTS, gamma=0.0)(logits, target), F.cross_entropy(logits, target))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape, power", [("concave", None), ("linear", None), ("convex", None), ("exp", 3.0)])
def test_label_aware_smoothing_matches_loop(dtype, shape, power):
    eps = naive_smoothing(COUNTS, 0.4, 0.1, shape, power)
    loss = LabelAwareSmoothing(COUNTS, smooth_head=0.4, smooth_tail=0.1, shape=shape, power=power)
    _assert_matches(loss, lambda z, y: naive_las(z, y, eps), dtype)


def test_label_aware_smoothing_with_one_factor_is_torch_label_smoothing():
    logits, target = _batch(torch.float64, seed=3)
    loss = LabelAwareSmoothing(COUNTS, smooth_head=0.2, smooth_tail=0.2)
    torch.testing.assert_close(loss(logits, target), F.cross_entropy(logits, target, label_smoothing=0.2))
