"""CIFAR-10-LT on the real shared images (official pickle layout) and a tiny CIFAR-100 file."""

import pickle

import numpy as np
import pytest

from nolb.data import build_data
from nolb.data.profiles import long_tailed_counts
from nolb.errors import NolbError


@pytest.fixture(scope="module")
def cifar10_lt(cifar10_root):
    return build_data("cifar10_lt", root=cifar10_root, imbalance_ratio=100)


def _raw_train(root):
    folder = root / "cifar-10-batches-py"
    x, y = [], []
    for b in range(1, 6):
        with open(folder / f"data_batch_{b}", "rb") as f:
            entry = pickle.load(f)
        x.append(entry["data"])
        y += entry["labels"]
    return np.concatenate(x).reshape(-1, 3, 32, 32), np.asarray(y)


def test_cifar10_lt_counts(cifar10_lt):
    counts = np.bincount(cifar10_lt.train.labels.numpy(), minlength=10)
    assert len(cifar10_lt.train) == 12406 == counts.sum()
    assert counts.tolist() == long_tailed_counts(5000, 10, 100)
    assert counts[0] == 5000 and counts[-1] == 50
    assert cifar10_lt.class_counts.tolist() == counts.tolist()
    assert cifar10_lt.info["imbalance_ratio"] == 100.0 and cifar10_lt.info["sizes"]["train"] == 12406
    assert cifar10_lt.class_names[0] == "airplane" and cifar10_lt.train.images.shape[1:] == (3, 32, 32)


def test_cifar10_lt_train_is_cao_subsample(cifar10_lt, cifar10_root):
    x, y = _raw_train(cifar10_root)
    np.random.seed(0)  # the reference code's global seeding, re-done here independently
    expected = []
    for c, n in enumerate(long_tailed_counts(5000, 10, 100)):
        idx = np.where(y == c)[0]
        np.random.shuffle(idx)
        expected.append(idx[:n])
    expected = np.concatenate(expected)
    np.testing.assert_array_equal(cifar10_lt.train.images.numpy(), x[expected])
    np.testing.assert_array_equal(cifar10_lt.train.labels.numpy(), y[expected])


def test_cifar10_lt_val_balanced_and_held_out(cifar10_lt, cifar10_root):
    val, train, test = cifar10_lt.val, cifar10_lt.train, cifar10_lt.test
    assert np.bincount(val.labels.numpy(), minlength=10).tolist() == [100] * 10
    # class 0 keeps all 5000 training images at IR 100: its validation comes from the test set
    assert np.bincount(test.labels.numpy(), minlength=10).tolist() == [900] + [1000] * 9

    def keys(ds):
        flat = ds.images.numpy().reshape(len(ds), -1)
        return {(int(label), row.tobytes()) for row, label in zip(flat, ds.labels.numpy())}

    val_keys, train_keys, test_keys = keys(val), keys(train), keys(test)
    assert not val_keys & test_keys and not val_keys & train_keys and len(val_keys) == 1000
    assert cifar10_lt.info["val_borrowed_from_train"] == {} and cifar10_lt.info["val_from_test"] == {"0": 100}
    assert cifar10_lt.info["test_source"] == "9,900 of the 10,000 official test images; 100 are validation"


def test_cifar100_tiny_file_end_to_end(cifar100_root):
    data = build_data("cifar100_lt", root=cifar100_root, imbalance_ratio=10, val_per_class=1)
    expected = long_tailed_counts(10, 100, 10)
    assert np.bincount(data.train.labels.numpy(), minlength=100).tolist() == expected
    assert data.class_counts.tolist() == expected and data.num_classes == 100
    assert data.class_names[7] == "class_07" and len(data.test) == 199 and len(data.val) == 100  # class 0 keeps all 10: its val image is from test
    assert data.preset == "cifar" and data.in_channels == 3


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(NolbError, match="cifar-10-batches-py"):
        build_data("cifar10_lt", root=tmp_path / "nowhere")
    with pytest.raises(NolbError, match="data.root: required"):
        build_data("cifar100_lt")


def test_corrupt_and_malicious_pickles_are_refused(cifar100_root, tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes((cifar100_root / "cifar-100-python" / name).read_bytes())
    (folder / "test").write_bytes(b"\x80\x02garbage")
    with pytest.raises(NolbError, match="test: unreadable CIFAR pickle"):
        build_data("cifar100_lt", root=tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(NolbError, match="refused global"):
        build_data("cifar100_lt", root=tmp_path)
