"""DiVELoss against a naive per-sample loop written from the paper's equations.

He, Wu, Wei, ICCV 2021: virtual-example distribution v = softmax(t / tau)^p, renormalised;
L = mean_i [ (1 - lam) BSCE_i + lam tau^2 sum_c v_ic (log v_ic - log softmax(s_i / tau)_c) ],
BSCE_i = -log( n_y exp(s_iy) / sum_k n_k exp(s_ik) ).
"""

from __future__ import annotations

import math

import pytest
import torch

from nolb.errors import NolbError
from nolb.losses import DiVELoss, build_loss


def naive_dive(student, teacher, target, counts, *, tau, p, lam):
    n, c = student.shape
    total = 0.0
    for i in range(n):
        soft_t = [math.exp(teacher[i, k].item() / tau) for k in range(c)]
        soft_t = [v / sum(soft_t) for v in soft_t]
        virtual = [v ** p for v in soft_t]
        virtual = [v / sum(virtual) for v in virtual]
        log_q = [student[i, k] / tau - torch.logsumexp(student[i] / tau, dim=0) for k in range(c)]
        kl = sum(virtual[k] * (math.log(virtual[k]) - log_q[k]) for k in range(c))
        y = int(target[i])
        shifted = [student[i, k] + math.log(counts[k]) for k in range(c)]
        bsce = -(shifted[y] - torch.logsumexp(torch.stack(shifted), dim=0))
        total = total + (1 - lam) * bsce + lam * tau ** 2 * kl
    return total / n


@pytest.mark.parametrize("tau,p,lam", [(3.0, 0.5, 0.5), (1.0, 1.0, 0.3), (2.0, 0.25, 1.0), (3.0, 0.5, 0.0)])
def test_matches_naive_loop_values_and_gradients(tau, p, lam):
    counts = [50, 12, 4, 1]
    g = torch.Generator().manual_seed(int(10 * tau + 100 * p))
    student = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = 3 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 0, 0])
    ours = DiVELoss(counts, temperature=tau, power=p, weight=lam)(student, target, teacher)
    (grad,) = torch.autograd.grad(ours, student)
    reference = naive_dive(student, teacher, target, counts, tau=tau, p=p, lam=lam)
    (expected,) = torch.autograd.grad(reference, student)
    assert torch.allclose(ours, reference, rtol=1e-10)
    assert torch.allclose(grad, expected, rtol=1e-9, atol=1e-12)


def test_gradcheck_and_no_gradient_to_the_teacher():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 1, 2, 0, 0])
    loss = DiVELoss([20, 5, 2])
    assert torch.autograd.gradcheck(lambda s: loss(s, target, teacher), (student,))
    loss(student, target, teacher).backward()
    assert teacher.grad is None


def test_power_flattens_the_teacher():
    teacher = torch.tensor([[6.0, 1.0, -2.0]])
    entropy = lambda d: float(-(d * d.log()).sum())
    sharp = DiVELoss([3, 2, 1], temperature=1.0, power=1.0).virtual_examples(teacher)
    flat = DiVELoss([3, 2, 1], temperature=1.0, power=0.5).virtual_examples(teacher)
    assert torch.allclose(sharp, torch.softmax(teacher, dim=1))
    assert entropy(flat) > entropy(sharp) and torch.allclose(flat.sum(), torch.tensor(1.0))


def test_without_teacher_is_a_one_line_error():
    with pytest.raises(NolbError, match="loss.options.teacher=RUN_DIR") as info:
        build_loss("dive", [3, 2])
    assert "\n" not in str(info.value)
    with pytest.raises(NolbError, match="power"):
        build_loss("dive", [3, 2], teacher="x", power=0.0)


def test_half_precision_and_extreme_logits():
    g = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = DiVELoss([20, 5, 2])
    value = loss(student.bfloat16(), target, teacher.bfloat16())
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(student.bfloat16().float(), target, teacher.bfloat16().float()))
    big = (1e4 * student.sign()).requires_grad_(True)
    extreme = loss(big, target, 1e4 * teacher.sign())
    extreme.backward()
    assert torch.isfinite(extreme) and torch.isfinite(big.grad).all()


def test_autocast_does_not_lower_the_loss_precision():
    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = DiVELoss([20, 5, 2])
    expected = loss(student, target, teacher)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(student, target, teacher)
    assert value.dtype == torch.float32 and torch.equal(value, expected)


def test_power_normalisation_equals_a_hotter_teacher():
    """softmax(z / tau) ** p renormalised == softmax(p z / tau): the teacher is read at tau / p."""
    z = 4 * torch.randn(5, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loss = DiVELoss([9, 5, 4, 3, 2, 2, 1], temperature=3.0, power=0.5)
    assert torch.allclose(loss.virtual_examples(z), torch.softmax(z / 6.0, dim=1), atol=1e-12)
