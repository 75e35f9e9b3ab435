"""recall_report / RecallReport against scikit-learn, imbalanced-learn, scipy and naive loops."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from imblearn.metrics import geometric_mean_score
from scipy.stats import hmean
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from nolb.errors import NolbError
from nolb.metrics import RecallReport, confusion_matrix, recall_report

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR_LOGITS = REPO_ROOT.parent / "shared" / "data" / "cifar100lt-logits"


def random_case(seed: int, num_classes: int, num_samples: int, skill: float):
    rng = np.random.default_rng(seed)
    y_true = np.concatenate([np.arange(num_classes), rng.integers(0, num_classes, num_samples - num_classes)])
    noise = rng.integers(0, num_classes, num_samples)
    y_pred = np.where(rng.random(num_samples) < skill, y_true, noise)
    return y_true, y_pred


def check_against_oracles(report: RecallReport, y_true, y_pred, num_classes: int, zero_recall: float) -> None:
    labels = list(range(num_classes))
    expected_recall = recall_score(y_true, y_pred, average=None, labels=labels, zero_division=0)
    np.testing.assert_allclose(report.per_class, expected_recall, rtol=0, atol=1e-12)
    assert report.am == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
    assert report.accuracy == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    expected_gm = geometric_mean_score(y_true, y_pred, labels=labels, average="multiclass", correction=zero_recall)
    assert report.gm == pytest.approx(expected_gm, rel=1e-10, abs=1e-15)
    corrected_recall = np.where(expected_recall == 0, zero_recall, expected_recall)
    expected_hm = hmean(corrected_recall) if (corrected_recall > 0).all() else 0.0
    assert report.hm == pytest.approx(expected_hm, rel=1e-10, abs=1e-15)
    assert report.lowest == min(expected_recall)
    assert report.lowest_class == labels[int(np.argmin(expected_recall))]
    assert report.num_zero == sum(1 for r in expected_recall if r == 0)
    assert report.hm <= report.gm + 1e-12 and report.gm <= report.am + 1e-12


@pytest.mark.parametrize("seed,num_classes,skill", [(0, 2, 0.6), (1, 5, 0.3), (2, 17, 0.5), (3, 40, 0.05)])
@pytest.mark.parametrize("zero_recall", [1e-3, 0.0, 0.05])
def test_random_cases_match_sklearn_imblearn_scipy(seed, num_classes, skill, zero_recall):
    y_true, y_pred = random_case(seed, num_classes, 300, skill)
    report = recall_report(y_true, y_pred, num_classes=num_classes, zero_recall=zero_recall)
    check_against_oracles(report, y_true, y_pred, num_classes, zero_recall)


@pytest.mark.parametrize(
    "y_true,y_pred",
    [
        ([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 1]),  # class 2 never predicted: recall 0
        ([0, 1, 2, 2, 2], [1, 0, 2, 2, 0]),  # two classes at recall 0
        ([0, 1, 2, 3], [0, 1, 2, 3]),  # everything right
        ([0, 0, 0, 1], [0, 0, 1, 1]),  # two classes
        ([0, 1, 1, 1], [1, 1, 1, 1]),  # one class entirely wrong, the other perfect
    ],
)
@pytest.mark.parametrize("zero_recall", [1e-3, 0.0])
def test_edge_cases_match_oracles(y_true, y_pred, zero_recall):
    num_classes = max(y_true) + 1
    report = recall_report(np.array(y_true), np.array(y_pred), num_classes=num_classes, zero_recall=zero_recall)
    check_against_oracles(report, np.array(y_true), np.array(y_pred), num_classes, zero_recall)
    if zero_recall == 0 and report.num_zero:
        assert report.gm == 0.0 and report.hm == 0.0


def test_everything_right_gives_ones():
    report = recall_report([0, 1, 2], [0, 1, 2], num_classes=3)
    assert (report.am, report.gm, report.hm, report.lowest, report.num_zero) == (1.0, 1.0, 1.0, 1.0, 0)


def test_scores_numpy_and_torch_give_the_same_report():
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(200, 7)).astype(np.float32)
    y_true = np.concatenate([np.arange(7), rng.integers(0, 7, 193)])
    from_labels = recall_report(y_true, scores.argmax(1), num_classes=7)
    from_scores = recall_report(y_true, scores, num_classes=7)
    from_torch = recall_report(torch.from_numpy(y_true), torch.from_numpy(scores).half(), num_classes=7)
    for other in (from_scores, from_torch):
        np.testing.assert_array_equal(other.per_class, from_labels.per_class)
        assert other.to_dict() == from_labels.to_dict()


def test_confusion_matrix_matches_sklearn_and_from_confusion_matches():
    y_true, y_pred = random_case(9, 6, 120, 0.4)
    matrix = confusion_matrix(y_true, y_pred, 6)
    np.testing.assert_array_equal(matrix, sk_confusion_matrix(y_true, y_pred, labels=range(6)))
    counts = np.arange(6) * 30
    direct = recall_report(y_true, y_pred, num_classes=6, train_counts=counts, bootstrap=50, seed=3)
    via_matrix = RecallReport.from_confusion(torch.from_numpy(matrix), train_counts=counts, bootstrap=50, seed=3)
    assert via_matrix.to_dict() == direct.to_dict()


def test_groups_at_threshold_boundaries():
    # train counts right at and around the thresholds 100 and 20
    counts = np.array([101, 100, 20, 19, 500, 0])
    y_true = np.repeat(np.arange(6), 4)
    y_pred = y_true.copy()
    y_pred[[0, 4, 5, 8, 9, 10, 12]] = 5  # recalls: .75, .5, .25, .75, 1, 1
    report = recall_report(y_true, y_pred, num_classes=6, train_counts=counts)
    recall = report.per_class
    assert report.group_sizes == {"many": 2, "medium": 2, "few": 2}
    assert report.many == pytest.approx(np.mean([recall[0], recall[4]]))
    assert report.medium == pytest.approx(np.mean([recall[1], recall[2]]))
    assert report.few == pytest.approx(np.mean([recall[3], recall[5]]))
    groups = [row["group"] for row in report.per_class_table()]
    assert groups == ["many", "medium", "medium", "few", "many", "few"]
    shifted = recall_report(y_true, y_pred, num_classes=6, train_counts=counts, many_threshold=19, few_threshold=19)
    assert shifted.group_sizes == {"many": 4, "medium": 1, "few": 1}


def test_empty_group_is_none_and_no_counts_gives_no_groups():
    report = recall_report([0, 1], [0, 0], num_classes=2, train_counts=[500, 300])
    assert report.group_sizes == {"many": 2, "medium": 0, "few": 0}
    assert report.medium is None and report.few is None and report.many == 0.5
    bare = recall_report([0, 1], [0, 0], num_classes=2)
    assert bare.many is None and bare.group_sizes == {} and bare.group_rule is None


@pytest.mark.parametrize(
    "y_true,y_pred,num_classes,message",
    [
        ([0, 1, 3], [0, 1, 1], 3, "y_true: 1 value(s) outside [0, 3)"),
        ([0, 1, 2], [0, 1, -1], 3, "y_pred"),
        ([0, 1, 2], [0, 1], 3, "3 samples but y_pred has 2"),
        ([0, 1, 2], np.array([[0.1, np.nan, 0.2], [1, 0, 0], [0, 0, 1]]), 3, "NaN"),
        ([0, 1, 2], np.zeros((3, 4)), 3, "4 columns"),
        ([0, 0, 2], [0, 0, 2], 3, "no test sample: 1"),
        ([0.5, 1, 2], [0, 1, 2], 3, "whole numbers"),
    ],
)
def test_bad_input_raises_a_value_error_that_says_which(y_true, y_pred, num_classes, message):
    with pytest.raises(ValueError, match=None) as info:
        recall_report(np.array(y_true), np.array(y_pred), num_classes=num_classes)
    assert isinstance(info.value, NolbError)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "options",
    [{"zero_recall": -0.1}, {"zero_recall": 2}, {"train_counts": [1, 2]}, {"class_names": ["a"]},
     {"few_threshold": 200}, {"bootstrap": -1}],
)
def test_bad_options_raise(options):
    with pytest.raises(NolbError):
        recall_report([0, 1, 2], [0, 1, 2], num_classes=3, **options)


def test_exclude_empty_drops_the_class_from_every_mean():
    y_true = np.array([0, 0, 2, 2, 3])
    y_pred = np.array([0, 1, 2, 1, 0])
    report = recall_report(y_true, y_pred, num_classes=4, train_counts=[200, 50, 50, 5], exclude_empty=True)
    assert report.excluded_classes == (1,)
    assert np.isnan(report.per_class[1])
    kept = [0.5, 0.5, 0.0]
    assert report.am == pytest.approx(np.mean(kept))
    assert report.gm == pytest.approx(geometric_mean_score([0, 0, 2, 2, 3], [0, 1, 2, 1, 0], labels=[0, 2, 3],
                                                           average="multiclass", correction=1e-3))
    assert report.lowest_class == 3 and report.num_zero == 1
    assert report.group_sizes == {"many": 1, "medium": 1, "few": 1}
    assert report.per_class_table()[1]["recall"] is None
    json.dumps(report.to_dict(), allow_nan=False)


def test_to_dict_json_csv_round_trip(tmp_path):
    y_true, y_pred = random_case(4, 5, 60, 0.5)
    names = ["cat", "dog", "owl", "eel", "yak"]
    report = recall_report(y_true, y_pred, num_classes=5, train_counts=[300, 90, 40, 20, 3], class_names=names, bootstrap=20)
    report.write_json(tmp_path / "r.json")
    report.write_csv(tmp_path / "r.csv")
    loaded = json.loads((tmp_path / "r.json").read_text())
    assert loaded == json.loads(json.dumps(report.to_dict()))
    assert loaded["per_class"] == pytest.approx(list(report.per_class))
    assert set(loaded["intervals"]) == {"accuracy", "am", "gm", "hm", "lowest"}
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [row["name"] for row in rows] == names
    assert [float(row["recall"]) for row in rows] == pytest.approx(list(report.per_class), abs=0)
    assert [int(row["test_count"]) for row in rows] == np.bincount(y_true, minlength=5).tolist()
    with pytest.raises(NolbError, match="already exists"):
        report.write_csv(tmp_path / "r.csv", overwrite=False)


@pytest.fixture(scope="module")
def ce_test_lt():
    path = CIFAR_LOGITS / "ce_test_lt.npz"
    if not path.is_file():
        pytest.skip(f"real CIFAR-100-LT logits not found at {path}")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_real_cifar100lt_ce_reproduces_the_readme_numbers(ce_test_lt):
    labels, logits = ce_test_lt["labels"], ce_test_lt["logits"]
    report = recall_report(labels, logits, num_classes=100, train_counts=ce_test_lt["train_counts"])
    check_against_oracles(report, labels, logits.argmax(1), 100, 1e-3)
    # the numbers printed in the data folder's README
    assert round(report.am, 4) == 0.3732 and round(report.accuracy, 4) == 0.6280
    assert round(report.hm, 4) == 0.0055 and round(report.gm, 4) == 0.1255
    assert report.num_zero == 18 and report.lowest == 0.0
    assert report.zero_recall_classes == [70, 72, 78, 79, 80, 81, 83, 84, 86, 87, 88, 91, 92, 93, 96, 97, 98, 99]
    assert report.group_sizes == {"many": 35, "medium": 35, "few": 30}
    assert (round(report.many, 3), round(report.medium, 3), round(report.few, 3)) == (0.653, 0.354, 0.069)
