"""Mixup and CutMix against their definitions."""

import torch

from nolb.data import cutmix_batch, mixed_loss, mixup_batch


def test_mixup_is_a_convex_combination_with_a_permutation():
    x = torch.randn(16, 3, 4, 4)
    y = torch.arange(16)
    mixed, y_a, y_b, lam = mixup_batch(x, y, 1.0, torch.Generator().manual_seed(0))
    assert 0.0 <= lam <= 1.0 and torch.equal(y_a, y)
    perm = y_b  # labels are the indices, so y_b is the permutation
    assert sorted(perm.tolist()) == list(range(16))
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])


def test_mixup_lambda_follows_beta():
    from scipy import stats

    generator = torch.Generator().manual_seed(1)
    lams = [mixup_batch(torch.zeros(2, 1), torch.zeros(2), 0.4, generator)[3] for _ in range(400)]
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 1e-3


def test_alpha_zero_disables_mixing():
    x, y = torch.randn(4, 2), torch.arange(4)
    assert mixup_batch(x, y, 0.0, None)[3] == 1.0 and cutmix_batch(x[:, :, None, None], y, 0.0, None)[3] == 1.0


def test_cutmix_lambda_is_the_kept_area():
    # image i is constant i + 1, so every pixel says which image it came from
    x = (torch.arange(8, dtype=torch.float32) + 1).view(8, 1, 1, 1).expand(8, 1, 10, 10).contiguous()
    for seed in range(5):
        mixed, y_a, y_b, lam = cutmix_batch(x, torch.arange(8), 1.0, torch.Generator().manual_seed(seed))
        moved = y_b != y_a
        kept = (mixed[moved] == x[moved]).float().flatten(1).mean(1)
        torch.testing.assert_close(kept, torch.full_like(kept, lam))
        pasted = mixed[moved] == x[y_b[moved]]
        assert torch.equal(pasted, ~(mixed[moved] == x[moved]))


def test_mixed_loss_is_the_weighted_sum():
    logits = torch.randn(5, 3)
    y_a, y_b = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2, 1, 0, 0])
    ce = torch.nn.CrossEntropyLoss()
    torch.testing.assert_close(mixed_loss(ce, logits, y_a, y_b, 0.3), 0.3 * ce(logits, y_a) + 0.7 * ce(logits, y_b))
