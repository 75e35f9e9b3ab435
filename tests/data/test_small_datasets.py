"""Fashion-MNIST-LT (Debian's IDX files), Digits-LT (scikit-learn) and the registry's checks."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from nolb.data import DATASET_NAMES, build_data, dataset_options
from nolb.data.fashion_mnist import DEFAULT_ROOT, read_idx
from nolb.data.profiles import long_tailed_counts
from nolb.errors import NolbError


def _fashion_root():
    root = Path(DEFAULT_ROOT)
    if not (root / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST IDX files not installed in {root} (Debian package dataset-fashion-mnist)")
    return root


def _naive_idx(path):
    raw = gzip.open(path).read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.array(list(raw[4 + 4 * ndim:]), dtype=np.uint8).reshape(shape)


def test_read_idx_matches_a_naive_parser():
    root = _fashion_root()
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(labels, _naive_idx(root / "t10k-labels-idx1-ubyte.gz"))
    assert np.bincount(labels).tolist() == [1000] * 10


def test_fashion_mnist_lt():
    _fashion_root()
    data = build_data("fashion_mnist_lt", imbalance_ratio=100)
    counts = np.bincount(data.train.labels.numpy(), minlength=10)
    assert counts.tolist() == long_tailed_counts(6000, 10, 100) and counts[0] == 6000 and counts[-1] == 60
    assert data.train.images.shape[1:] == (1, 28, 28) and data.in_channels == 1 and data.preset == "mnist"
    assert np.bincount(data.val.labels.numpy(), minlength=10).tolist() == [100] * 10
    assert len(data.test) == 9900 and data.info["source"] == DEFAULT_ROOT  # class 0 validates on 100 test images


def test_fashion_mnist_missing_root_mentions_debian_default(tmp_path):
    with pytest.raises(NolbError, match="dataset-fashion-mnist"):
        build_data("fashion_mnist_lt", root=tmp_path / "absent")


def test_truncated_idx_file_is_named(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") * 3 + b"\x00" * 5)
    with pytest.raises(NolbError, match="train-images-idx3-ubyte: IDX size mismatch"):
        read_idx(bad)


def test_digits_lt_splits():
    from sklearn.datasets import load_digits

    data = build_data("digits_lt")
    counts = np.bincount(data.train.labels.numpy(), minlength=10)
    assert counts.tolist() == long_tailed_counts(100, 10, 20) == data.class_counts.tolist()
    assert np.bincount(data.test.labels.numpy()).tolist() == [50] * 10
    assert np.bincount(data.val.labels.numpy()).tolist() == [20] * 10
    # the three splits are disjoint images of sklearn's set (match rows back to the source)
    source = np.rint(load_digits().images * 255 / 16).astype(np.uint8).reshape(1797, -1)
    lookup = {row.tobytes(): [] for row in source}
    for i, row in enumerate(source):
        lookup[row.tobytes()].append(i)
    used = []
    for split in (data.train, data.val, data.test):
        for row in split.images.numpy().reshape(len(split), -1):
            used.append(lookup[row.tobytes()][0])
    assert len(used) == 335 + 200 + 500
    duplicates = sum(len(v) - 1 for v in lookup.values())
    assert len(set(used)) >= len(used) - duplicates
    # the test split does not depend on the training seed
    other = build_data("digits_lt", seed=3, imbalance_ratio=10)
    assert np.array_equal(other.test.images.numpy(), data.test.images.numpy())


def test_unknown_name_and_option_list_the_valid_ones():
    with pytest.raises(NolbError, match="cifar10_lt, cifar100_lt"):
        build_data("cifar1000_lt")
    with pytest.raises(NolbError, match="data.imbalance: unknown option for digits_lt; valid options: .*ratio"):
        build_data("digits_lt", imbalance=10)
    assert "root" in dataset_options("cifar10_lt") and len(DATASET_NAMES) == 9
