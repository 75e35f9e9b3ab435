"""Long-tailed count profiles and Cao et al.'s subsample, against naive re-implementations."""

import numpy as np
import pytest

from nolb.data.profiles import group_sizes, long_tailed_counts, subsample_long_tailed
from nolb.data.split_plans import plan_validation
from nolb.errors import NolbError


def _reference_counts(img_max, cls_num, imb_factor, imb_type="exp"):
    # LDAM-DRW's get_img_num_per_cls, written out as in the paper's code.
    img_num_per_cls = []
    if imb_type == "exp":
        for cls_idx in range(cls_num):
            img_num_per_cls.append(int(img_max * (imb_factor ** (cls_idx / (cls_num - 1.0)))))
    else:
        for _ in range(cls_num // 2):
            img_num_per_cls.append(int(img_max))
        for _ in range(cls_num - cls_num // 2):
            img_num_per_cls.append(int(img_max * imb_factor))
    return img_num_per_cls


@pytest.mark.parametrize("ir,total", [(100, 10847), (50, 12608), (10, 19573)])
def test_cifar100_lt_totals(ir, total):
    counts = long_tailed_counts(500, 100, ir)
    assert counts == _reference_counts(500, 100, 1.0 / ir)
    assert sum(counts) == total
    assert counts[0] == 500 and counts[-1] == 500 // ir


def test_cifar10_lt_ir100():
    counts = long_tailed_counts(5000, 10, 100)
    assert sum(counts) == 12406 and counts[0] == 5000 and counts[-1] == 50


@pytest.mark.parametrize("ir", [10, 100])
def test_step_profile(ir):
    assert long_tailed_counts(500, 100, ir, "step") == _reference_counts(500, 100, 1.0 / ir, "step")


def test_balanced_when_ratio_is_one():
    assert long_tailed_counts(7, 5, 1.0) == [7] * 5


@pytest.mark.parametrize("kwargs", [dict(imbalance_ratio=0.5), dict(profile="linear"), dict(imbalance_ratio=1e6)])
def test_bad_profile_arguments(kwargs):
    args = dict(n_max=100, num_classes=10, imbalance_ratio=10.0, profile="exp") | kwargs
    with pytest.raises(NolbError):
        long_tailed_counts(**args)


def test_subsample_matches_reference_global_seed_code():
    rng = np.random.RandomState(5)
    labels = rng.permutation(np.repeat(np.arange(6), 40))
    counts = long_tailed_counts(40, 6, 10)
    # The reference: np.random.seed(0) once, then per class np.random.shuffle(idx), keep idx[:n].
    state = np.random.get_state()
    np.random.seed(0)
    expected = []
    for c, n in enumerate(counts):
        idx = np.where(labels == c)[0]
        np.random.shuffle(idx)
        expected.append(idx[:n])
    np.random.set_state(state)
    kept, unused = subsample_long_tailed(labels, counts, seed=0)
    for c in range(6):
        np.testing.assert_array_equal(kept[c], expected[c])
        assert sorted(np.concatenate([kept[c], unused[c]])) == sorted(np.where(labels == c)[0])


def test_validation_never_borrows_unless_asked():
    labels = np.repeat(np.arange(4), 30)
    test_labels = np.repeat(np.arange(4), 12)
    kept, unused = subsample_long_tailed(labels, [30, 20, 10, 5], seed=0)
    train = set(np.concatenate(kept).tolist())
    plan = plan_validation(unused, kept, test_labels, 8, seed=1)
    # class 0 keeps all 30 images: its 8 validation images come from the test set
    assert plan.by_class == {0: "test", 1: "unused", 2: "unused", 3: "unused"} and plan.borrowed == {}
    assert np.bincount(labels[plan.from_train], minlength=4).tolist() == [0, 8, 8, 8]
    assert np.bincount(test_labels[plan.from_test], minlength=4).tolist() == [8, 0, 0, 0]
    assert not set(plan.from_train.tolist()) & train
    assert sorted(plan.from_test.tolist() + plan.test_kept.tolist()) == list(range(48))
    borrow = plan_validation(unused, kept, test_labels, 8, seed=1, source="borrow_train")
    overlap = np.bincount(labels[[v for v in borrow.from_train if v in train]], minlength=4)
    assert overlap.tolist() == [8, 0, 0, 0] and borrow.borrowed == {0: 8} and len(borrow.test_kept) == 48
    same = [i for i in plan.from_train.tolist()]  # classes 1-3 validate on the same images either way
    assert [i for i in borrow.from_train.tolist() if labels[i] != 0] == same
    everything = plan_validation(unused, kept, test_labels, 8, seed=1, source="test")
    assert len(everything.from_train) == 0 and np.bincount(test_labels[everything.from_test]).tolist() == [8] * 4


def test_validation_slice_larger_than_the_test_set_is_refused():
    labels = np.repeat(np.arange(2), 10)
    kept, unused = subsample_long_tailed(labels, [10, 10], seed=0)
    with pytest.raises(NolbError, match="class 0 needs 5 validation images from the official test set, which has only 4"):
        plan_validation(unused, kept, np.repeat(np.arange(2), 4), 5, seed=1)
    with pytest.raises(NolbError, match="data.val_source: unknown value 'train'"):
        plan_validation(unused, kept, labels, 5, seed=1, source="train")


def test_group_sizes_against_loop():
    counts = np.random.RandomState(0).randint(1, 300, size=50)
    many = sum(1 for n in counts if n > 100)
    few = sum(1 for n in counts if n < 20)
    assert group_sizes(counts) == {"many": many, "medium": 50 - many - few, "few": few}
