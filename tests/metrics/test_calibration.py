"""Calibration metrics against independent implementations (torchmetrics, sklearn, naive loops)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from nolb.errors import NolbError
from nolb.metrics import calibration_report, format_table, recall_report
from nolb.metrics.calibration import probabilities


def make_case(seed=0, num=600, classes=7, sharp=2.0):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(classes), rng.integers(0, classes, num - classes)])
    logits = rng.normal(size=(num, classes)) * sharp
    logits[np.arange(num), labels] += rng.uniform(0, 3, num)
    return labels, logits


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def naive_binary_ece(conf, outcome, bins=15):
    total = 0.0
    for m in range(bins):
        lo, hi = m / bins, (m + 1) / bins
        members = [i for i in range(len(conf)) if (lo < conf[i] <= hi) or (m == 0 and conf[i] == 0)]
        if members:
            acc = sum(outcome[i] for i in members) / len(members)
            mean_conf = sum(conf[i] for i in members) / len(members)
            total += len(members) / len(conf) * abs(acc - mean_conf)
    return total


def naive_brier(probs, labels):
    total = 0.0
    for i in range(len(labels)):
        total += sum((probs[i, k] - (1.0 if labels[i] == k else 0.0)) ** 2 for k in range(probs.shape[1]))
    return total / len(labels)


@pytest.mark.parametrize("seed,sharp", [(0, 2.0), (1, 0.5), (2, 5.0)])
def test_ece_matches_torchmetrics(seed, sharp):
    labels, logits = make_case(seed, sharp=sharp)
    ours = calibration_report(labels, logits).ece
    theirs = multiclass_calibration_error(
        torch.from_numpy(logits), torch.from_numpy(labels), num_classes=7, n_bins=15, norm="l1"
    ).item()
    assert ours == pytest.approx(theirs, abs=1e-6)
    assert ours == pytest.approx(naive_binary_ece(softmax(logits).max(1), softmax(logits).argmax(1) == labels), abs=1e-12)


def test_nll_matches_sklearn_and_brier_and_classwise_match_naive_loops():
    labels, logits = make_case(3)
    probs = softmax(logits)
    report = calibration_report(labels, logits)
    assert report.nll == pytest.approx(log_loss(labels, probs, labels=range(7)), abs=1e-6)
    assert report.brier == pytest.approx(naive_brier(probs, labels), abs=1e-9)
    per_class = [naive_binary_ece(probs[:, k], (labels == k).astype(float)) for k in range(7)]
    np.testing.assert_allclose(report.per_class_ece, per_class, atol=1e-12)
    assert report.classwise_ece == pytest.approx(np.mean(per_class), abs=1e-12)


def test_probabilities_give_the_same_metrics_as_their_logits():
    labels, logits = make_case(4)
    from_logits = calibration_report(labels, logits).to_dict()
    from_probs = calibration_report(labels, softmax(logits), kind="probs").to_dict()
    for key in ("ece", "classwise_ece", "nll", "brier"):
        assert from_probs[key] == pytest.approx(from_logits[key], abs=1e-9)
    assert from_probs["source"] == "probs" and from_logits["source"] == "logits"


def test_groups_are_the_metrics_of_their_images_and_classes():
    labels, logits = make_case(5)
    counts = np.array([500, 300, 150, 60, 30, 10, 5])
    report = calibration_report(labels, logits, train_counts=counts)
    few = np.isin(labels, [5, 6])
    alone = calibration_report(labels[few], logits[few])
    assert report.groups["few"]["ece"] == pytest.approx(alone.ece, abs=1e-12)
    assert report.groups["few"]["nll"] == pytest.approx(alone.nll, abs=1e-12)
    assert report.groups["few"]["brier"] == pytest.approx(alone.brier, abs=1e-12)
    assert report.groups["many"]["classwise_ece"] == pytest.approx(report.per_class_ece[:3].mean(), abs=1e-12)
    empty = calibration_report(labels, logits, train_counts=np.full(7, 1000))
    assert empty.groups["few"] == {"ece": None, "classwise_ece": None, "nll": None, "brier": None}


def test_bootstrap_intervals_follow_a_naive_stratified_resample():
    labels, logits = make_case(6, num=200, classes=4)
    report = calibration_report(labels, logits, bootstrap=400, seed=1)
    rng = np.random.default_rng(11)
    values = {"ece": [], "nll": [], "brier": [], "classwise_ece": []}
    for _ in range(400):
        index = np.concatenate([rng.choice(np.flatnonzero(labels == c), (labels == c).sum()) for c in range(4)])
        again = calibration_report(labels[index], logits[index])
        for key in values:
            values[key].append(getattr(again, key))
    for key, samples in values.items():
        low, high = report.intervals[key]
        naive_low, naive_high = np.percentile(samples, [2.5, 97.5])
        spread = naive_high - naive_low
        assert abs(low - naive_low) < 0.25 * spread and abs(high - naive_high) < 0.25 * spread, key


def test_report_json_and_table_carry_calibration():
    labels, logits = make_case(7)
    report = recall_report(labels, logits, num_classes=7, calibration="logits", bootstrap=50)
    data = report.to_dict()
    assert data["ece"] == report.calibration.ece and data["nll"] == report.calibration.nll
    assert set(data["intervals"]) >= {"ece", "classwise_ece", "nll", "brier", "hm"}
    assert sum(data["calibration"]["reliability"]["counts"]) == 600
    assert "ece" not in recall_report(labels, logits, num_classes=7).to_dict()
    header = format_table({"x": report}).splitlines()[0]
    assert "| ECE | cw-ECE | NLL | Brier |" in header
    row = format_table({"x": report}).splitlines()[2]
    assert f"{100 * report.calibration.ece:.2f}" in row and f"{report.calibration.nll:.3f}" in row


def test_bad_inputs_raise_one_line_errors():
    labels, logits = make_case(8, num=20, classes=3)
    with pytest.raises(NolbError, match="sum to 1"):
        probabilities(np.full((2, 3), 0.5), "probs")
    with pytest.raises(NolbError, match="kind"):
        calibration_report(labels, logits, kind="scores")
    with pytest.raises(NolbError, match="predicted labels"):
        recall_report(labels, logits.argmax(1), num_classes=3, calibration="logits")
    with pytest.raises(NolbError, match="NaN"):
        calibration_report(labels, np.full((20, 3), np.nan))
    with pytest.raises(NolbError, match="all -inf"):
        calibration_report(labels, np.full((20, 3), -np.inf))
