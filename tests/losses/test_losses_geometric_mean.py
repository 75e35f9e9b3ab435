"""GeometricMeanLoss: naive loop, independent test vectors, gradcheck and the properties of METHOD.md §4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nolb.losses import BalancedSoftmaxLoss, GeometricMeanLoss

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT.parent / "shared" / "data" / "testvectors" / "gml_vectors.npz"
COUNTS = torch.tensor([40, 25, 10, 6, 3, 1])


def _batch(dtype=torch.float64, seed=0, n=16, scale=2.0, num_classes=len(COUNTS)):
    generator = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, num_classes, generator=generator)).to(dtype)
    target = torch.randint(0, num_classes, (n,), generator=generator)
    return logits.requires_grad_(True), target


def naive_gml(logits, target, counts, tau=1.0, aggregate="mean_then_log", power=1.0):
    """Class by class, sample by sample, with the multiplicative prior n_j^tau exp(z_j)."""
    weights = [float(c) ** tau for c in counts.tolist()]
    terms = []
    for c in sorted(set(target.tolist())):
        values = []
        for i in range(logits.shape[0]):
            if int(target[i]) != c:
                continue
            m = logits[i].max().detach()
            numerators = [weights[j] * torch.exp(logits[i, j] - m) for j in range(logits.shape[1])]
            p = torch.clamp(numerators[c] / sum(numerators), 1e-5, 1.0)
            values.append(p if aggregate == "mean_then_log" else -torch.log(p))
        mean = sum(values) / len(values)
        terms.append(-torch.log(mean) if aggregate == "mean_then_log" else mean)
    return (sum(t**power for t in terms) / len(terms)) ** (1.0 / power)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau", [1.0, 0.0, 0.5])
@pytest.mark.parametrize("aggregate", ["mean_then_log", "log_then_mean"])
@pytest.mark.parametrize("power", [1.0, 2.0, 0.5])
def test_matches_naive_loop(dtype, tau, aggregate, power):
    logits, target = _batch(dtype, seed=int(tau * 10) + int(power * 3), scale=4.0)
    loss = GeometricMeanLoss(COUNTS, prior_strength=tau, aggregate=aggregate, power=power)
    ours = loss(logits, target)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    expected = naive_gml(logits, target, COUNTS, tau, aggregate, power)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours, expected, **tol)
    torch.testing.assert_close(grad_ours, grad_expected, **tol)


@pytest.mark.skipif(not VECTORS.exists(), reason=f"test vectors not found at {VECTORS}")
@pytest.mark.parametrize("case", range(5))
def test_matches_independent_test_vectors(case):
    data = np.load(VECTORS)
    for tau in (1.0, 0.0, 0.5):
        for aggregate in ("mean_then_log", "log_then_mean"):
            logits = torch.tensor(data[f"c{case}_logits"], dtype=torch.float64, requires_grad=True)
            target = torch.tensor(data[f"c{case}_labels"], dtype=torch.int64)
            loss = GeometricMeanLoss(data[f"c{case}_counts"], prior_strength=tau, aggregate=aggregate)
            value = loss(logits, target)
            value.backward()
            key = f"c{case}_tau{tau}_{aggregate}"
            np.testing.assert_allclose(value.item(), data[f"{key}_loss"], rtol=1e-10, atol=1e-12, err_msg=key)
            np.testing.assert_allclose(logits.grad.numpy(), data[f"{key}_grad"], rtol=1e-8, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("aggregate", ["mean_then_log", "log_then_mean"])
def test_gradcheck_fp64(aggregate):
    logits, target = _batch(torch.float64, seed=11, n=8, scale=1.0)
    loss = GeometricMeanLoss(COUNTS, aggregate=aggregate)
    assert torch.autograd.gradcheck(lambda z: loss(z, target), (logits,))


def test_each_class_once_equals_class_balanced_mean_of_log_probabilities():
    logits, _ = _batch(torch.float64, seed=2, n=len(COUNTS), scale=1.0)
    target = torch.randperm(len(COUNTS), generator=torch.Generator().manual_seed(2))
    gml = GeometricMeanLoss(COUNTS)(logits, target)
    expected = F.cross_entropy(logits + COUNTS.double().log(), target)  # mean of -log p~ (no clamp binds here)
    torch.testing.assert_close(gml, expected)
    torch.testing.assert_close(gml, BalancedSoftmaxLoss(COUNTS)(logits, target))


def test_absent_classes_add_no_term_and_the_divisor_counts_present_classes():
    loss = GeometricMeanLoss(COUNTS)
    logits, _ = _batch(torch.float64, seed=3, n=9)
    old_target = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1])
    new_logits, _ = _batch(torch.float64, seed=4, n=3)
    new_target = torch.tensor([5, 5, 5])
    both = loss(torch.cat([logits, new_logits]), torch.cat([old_target, new_target]))
    # Rows are independent, so the new class's term is the loss of its samples alone.
    expected = (3 * loss(logits, old_target) + loss(new_logits, new_target)) / 4
    torch.testing.assert_close(both, expected)


def test_invariant_to_permuting_samples():
    loss = GeometricMeanLoss(COUNTS, prior_strength=0.5)
    logits, target = _batch(torch.float64, seed=5, n=20)
    order = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss(logits[order], target[order]), loss(logits, target))


def test_equal_counts_and_zero_prior_equal_the_plain_softmax_version():
    logits, target = _batch(torch.float64, seed=6)
    plain = naive_gml(logits, target, torch.ones(len(COUNTS)), tau=0.0)
    torch.testing.assert_close(GeometricMeanLoss(torch.full((len(COUNTS),), 7))(logits, target), plain)
    torch.testing.assert_close(GeometricMeanLoss(COUNTS, prior_strength=0.0)(logits, target), plain)
    with_zero_count = torch.tensor([4, 0, 2, 1, 9, 3])  # no log n needed when tau = 0
    torch.testing.assert_close(GeometricMeanLoss(with_zero_count, prior_strength=0.0)(logits, target), plain)


@pytest.mark.parametrize("seed", range(5))
def test_log_then_mean_is_at_least_mean_then_log(seed):
    logits, target = _batch(torch.float32, seed=seed, n=32, scale=3.0)
    gml = GeometricMeanLoss(COUNTS)(logits, target)
    jensen = GeometricMeanLoss(COUNTS, aggregate="log_then_mean")(logits, target)
    assert jensen >= gml - 1e-6
    assert jensen > gml  # strict: some class has two samples with different p~


def test_power_mean_grows_with_power_and_tends_to_the_worst_class():
    logits, target = _batch(torch.float64, seed=7, n=24, scale=3.0)
    values = [GeometricMeanLoss(COUNTS, power=p)(logits, target).item() for p in (0.25, 0.5, 1.0, 2.0, 4.0, 200.0)]
    assert all(a <= b + 1e-12 for a, b in zip(values, values[1:]))
    worst = max(naive_gml(logits[target == c], target[target == c], COUNTS).item() for c in target.unique().tolist())
    assert values[-1] == pytest.approx(worst, rel=0.02)
