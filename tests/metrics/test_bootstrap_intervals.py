"""The binomial stratified bootstrap against a naive bootstrap that really resamples test images."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.stats import gmean, hmean, ks_2samp

from nolb.errors import NolbError
from nolb.metrics import bootstrap_metric_samples, recall_report


def naive_stratified_bootstrap(y_true, y_pred, num_classes, num_resamples, zero_recall, seed):
    """Resample the test images of each class with replacement and recompute every metric."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y_true == c) for c in range(num_classes)]
    values = {name: [] for name in ("accuracy", "am", "gm", "hm", "lowest")}
    for _ in range(num_resamples):
        picked = np.concatenate([rng.choice(idx, size=idx.size, replace=True) for idx in by_class])
        hit = y_pred[picked] == y_true[picked]
        recall = np.array([hit[y_true[picked] == c].mean() for c in range(num_classes)])
        fixed = np.where(recall == 0, zero_recall, recall)
        values["accuracy"].append(hit.mean())
        values["am"].append(recall.mean())
        values["gm"].append(gmean(fixed))
        values["hm"].append(hmean(fixed))
        values["lowest"].append(recall.min())
    return {name: np.array(v) for name, v in values.items()}


def small_case(scale: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    test_counts = np.array([40, 12, 6, 25, 9]) * scale
    recall_target = np.array([0.9, 0.6, 0.5, 0.3, 0.8])
    y_true = np.repeat(np.arange(5), test_counts)
    correct = np.concatenate([rng.permutation(np.arange(n) < round(r * n)) for n, r in zip(test_counts, recall_target)])
    y_pred = np.where(correct, y_true, (y_true + 1) % 5)
    return y_true, y_pred


def test_binomial_bootstrap_has_the_distribution_of_a_real_resampling():
    y_true, y_pred = small_case()
    report = recall_report(y_true, y_pred, num_classes=5)
    fast = bootstrap_metric_samples(report.correct, report.test_counts, num_resamples=4000, zero_recall=1e-3, seed=1)
    naive = naive_stratified_bootstrap(y_true, y_pred, 5, 1500, 1e-3, seed=2)
    for name in naive:
        assert fast[name].mean() == pytest.approx(naive[name].mean(), abs=0.01, rel=0.03), name
        assert fast[name].std() == pytest.approx(naive[name].std(), rel=0.12, abs=2e-3), name
        # largest gap between the two empirical CDFs (5-sigma bound for 1500 vs 4000 draws is ~0.09)
        assert ks_2samp(fast[name], naive[name]).statistic < 0.08, name


def test_intervals_contain_the_estimate_and_shrink_as_the_test_set_grows():
    widths = []
    for scale in (1, 4, 16):
        y_true, y_pred = small_case(scale)
        report = recall_report(y_true, y_pred, num_classes=5, bootstrap=800, seed=0)
        assert set(report.intervals) == {"accuracy", "am", "gm", "hm", "lowest"}
        for name, (low, high) in report.intervals.items():
            assert low <= getattr(report, name) <= high, (scale, name)
        widths.append({name: high - low for name, (low, high) in report.intervals.items()})
    for name in ("accuracy", "am", "gm", "hm", "lowest"):
        assert widths[0][name] > widths[1][name] > widths[2][name], name
    # width ~ 1/sqrt(n): 16x the images gives about a quarter of the width
    assert widths[2]["am"] == pytest.approx(widths[0]["am"] / 4, rel=0.35)


def test_bootstrap_is_seeded_and_off_by_default():
    y_true, y_pred = small_case()
    assert recall_report(y_true, y_pred, num_classes=5).intervals == {}
    first = recall_report(y_true, y_pred, num_classes=5, bootstrap=100, seed=7).intervals
    assert first == recall_report(y_true, y_pred, num_classes=5, bootstrap=100, seed=7).intervals
    assert first != recall_report(y_true, y_pred, num_classes=5, bootstrap=100, seed=8).intervals


def test_bad_resample_count_raises():
    with pytest.raises(NolbError, match="positive integer"):
        bootstrap_metric_samples(np.array([1]), np.array([2]), num_resamples=0)


def test_1000_resamples_1000_classes_50000_predictions_take_seconds():
    rng = np.random.default_rng(0)
    y_true = np.concatenate([np.arange(1000), rng.integers(0, 1000, 49_000)])
    y_pred = np.where(rng.random(50_000) < 0.6, y_true, rng.integers(0, 1000, 50_000))
    start = time.perf_counter()
    report = recall_report(y_true, y_pred, num_classes=1000, bootstrap=1000)
    elapsed = time.perf_counter() - start
    print(f"bootstrap 1000 x 1000 classes x 50,000 predictions: {elapsed:.2f} s")
    assert elapsed < 10.0
    assert report.intervals["am"][0] < report.am < report.intervals["am"][1]
