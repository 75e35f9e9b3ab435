"""build_loss names and errors, input checks, half-precision inputs, extreme logits and devices."""

from __future__ import annotations

import pytest
import torch

from nolb.errors import NolbError
from nolb.losses import (
    LOSS_NAMES, STEP_LOSS_NAMES, BalancedSoftmaxLoss, GeometricMeanLoss, build_loss, loss_options,
)

COUNTS = torch.tensor([40, 16, 6, 2])
PLAIN_NAMES = tuple(n for n in LOSS_NAMES if n not in STEP_LOSS_NAMES)  # called as loss(logits, target)
EXPECTED_NAMES = {"ce", "bsce", "la", "ldam", "ldam_drw", "focal", "cb", "cb_focal", "las", "gml"}


def _batch(dtype=torch.float32, seed=0, n=10, scale=2.0):
    generator = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, len(COUNTS), generator=generator)).to(dtype)
    target = torch.randint(0, len(COUNTS), (n,), generator=generator)
    return logits, target


def test_loss_names_cover_the_issue():
    assert EXPECTED_NAMES <= set(LOSS_NAMES)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_every_loss_builds_and_gives_a_differentiable_scalar(name):
    loss = build_loss(name, COUNTS)
    assert torch.equal(dict(loss.named_buffers())["class_counts"], COUNTS)
    logits, target = _batch()
    logits.requires_grad_(True)
    value = loss(logits, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", PLAIN_NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_computed_in_float32(name, dtype):
    loss = build_loss(name, COUNTS)
    logits, target = _batch(dtype)
    half = logits.clone().requires_grad_(True)
    value = loss(half, target)
    value.backward()
    single = logits.float().requires_grad_(True)
    expected = loss(single, target)
    expected.backward()
    assert value.dtype == torch.float32 and half.grad.dtype == dtype
    torch.testing.assert_close(value, expected, rtol=0, atol=0)
    torch.testing.assert_close(half.grad, single.grad.to(dtype))


@pytest.mark.parametrize("name", PLAIN_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_give_finite_loss_and_gradients(name, dtype):
    loss = build_loss(name, COUNTS)
    generator = torch.Generator().manual_seed(1)
    logits = (1e4 * torch.randint(-1, 2, (12, len(COUNTS)), generator=generator)).to(dtype).requires_grad_(True)
    target = torch.randint(0, len(COUNTS), (12,), generator=generator)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


def test_counts_stay_int64_under_half_and_follow_the_module():
    loss = GeometricMeanLoss(COUNTS).half().to("cpu")
    assert loss.class_counts.dtype == torch.int64 and loss.class_counts.device.type == "cpu"
    logits, target = _batch(torch.float16)
    assert loss(logits, target).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_cuda_matches_cpu(name):
    loss = build_loss(name, COUNTS)
    logits, target = _batch()
    expected = loss(logits, target)
    value = loss.to("cuda")(logits.cuda(), target.cuda())
    torch.testing.assert_close(value.cpu(), expected, rtol=1e-5, atol=1e-6)


def test_unknown_name_lists_every_valid_name():
    with pytest.raises(NolbError, match=r"unknown loss 'xx', expected one of \(") as error:
        build_loss("xx", COUNTS)
    for name in LOSS_NAMES:
        assert name in str(error.value)


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(NolbError, match=r"loss 'la': unknown option 'gamma', expected one of \(tau\)"):
        build_loss("la", COUNTS, gamma=2.0)
    with pytest.raises(NolbError, match=r"unknown option 'p'.*prior_strength, aggregate, power"):
        build_loss("gml", COUNTS, p=2)
    assert loss_options("ldam_drw") == ("max_margin", "scale", "drw_epoch", "beta")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("la", {"tau": -1.0}, "tau must be >= 0"),
        ("gml", {"prior_strength": -0.5}, "prior_strength must be >= 0"),
        ("gml", {"aggregate": "median"}, r"aggregate 'median', expected one of \(mean_then_log, log_then_mean\)"),
        ("gml", {"power": 0}, "power must be > 0"),
        ("focal", {"gamma": -2}, "gamma must be >= 0"),
        ("focal", {"gamma": "two"}, "gamma must be a number"),
        ("cb", {"beta": 1.0}, "beta must be < 1"),
        ("ldam", {"max_margin": 0.0}, "max_margin must be > 0"),
        ("ldam_drw", {"drw_epoch": -1}, "drw_epoch must be an integer >= 0"),
        ("las", {"smooth_head": 1.5}, "smooth_head must be <= 1"),
        ("las", {"shape": "exp"}, "shape 'exp' needs the option power"),
        ("las", {"shape": "round"}, r"unknown shape 'round', expected one of \(concave, linear, convex, exp\)"),
        ("ce", {"weight": [1.0, 2.0]}, r"weight must have shape \(4,\)"),
        ("ce", {"weight": [1.0, 0.0, 1.0, 1.0]}, "weight must hold finite numbers > 0"),
    ],
)
def test_invalid_option_values(name, options, message):
    with pytest.raises(NolbError, match=message):
        build_loss(name, COUNTS, **options)


@pytest.mark.parametrize("name", ["bsce", "la", "gml", "ldam", "ldam_drw", "cb", "cb_focal"])
def test_zero_count_is_rejected_where_log_or_power_of_n_is_needed(name):
    with pytest.raises(NolbError, match="class 2 has a training count of 0"):
        build_loss(name, [5, 3, 0, 1])


@pytest.mark.parametrize("name", ["ce", "focal", "las"])
def test_zero_count_is_fine_where_n_is_not_needed(name):
    loss = build_loss(name, [5, 3, 0, 1])
    assert torch.isfinite(loss(*_batch()))


@pytest.mark.parametrize(
    "counts, message",
    [
        ([[1, 2], [3, 4]], "non-empty 1-D"),
        ([], "non-empty 1-D"),
        ([3, -1, 2, 2], "class 1 has -1"),
        ([3, 1.5, 2, 2], "whole numbers, class 1 has 1.5"),
        ([3, float("nan"), 2, 2], "finite"),
        ("many", "must be numeric"),
    ],
)
def test_bad_class_counts(counts, message):
    with pytest.raises(NolbError, match=message):
        build_loss("ce", counts)


def test_bad_batches():
    loss = BalancedSoftmaxLoss(COUNTS)
    logits, target = _batch()
    with pytest.raises(NolbError, match=r"logits must have shape \(N, 4\), got \(10, 3\)"):
        loss(logits[:, :3], target)
    with pytest.raises(NolbError, match=r"target must have shape \(10,\)"):
        loss(logits, target[:5])
    with pytest.raises(NolbError, match="integer class indices"):
        loss(logits, target.float())
    with pytest.raises(NolbError, match="class index 4, expected 0..3"):
        loss(logits, torch.full((10,), 4))
    with pytest.raises(NolbError, match="empty batch"):
        loss(logits[:0], target[:0])
