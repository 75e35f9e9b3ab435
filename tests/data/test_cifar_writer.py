"""write_cifar10_batches: what it writes is read back unchanged by the official-layout reader."""

import numpy as np
import pytest

from nolb.data import write_cifar10_batches
from nolb.data.cifar import read_cifar
from nolb.errors import NolbError


def _arrays(n_train=55, n_test=7, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n_test))


def test_round_trip_through_the_reader(tmp_path):
    x_train, y_train, x_test, y_test = _arrays()
    names = [f"c{i}" for i in range(10)]
    write_cifar10_batches(tmp_path, x_train, y_train, x_test, y_test, names)
    rx_train, ry_train, rx_test, ry_test, rnames, _ = read_cifar(tmp_path, 10)
    # the reader gives CHW; the writer takes HWC
    np.testing.assert_array_equal(rx_train, x_train.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ry_train, y_train)
    np.testing.assert_array_equal(rx_test, x_test.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ry_test, y_test)
    assert rnames == names
    assert sorted(p.name for p in (tmp_path / "cifar-10-batches-py").iterdir()) == [
        "batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
        "test_batch"]
    assert [p.name for p in tmp_path.iterdir()] == ["cifar-10-batches-py"]  # no staging litter


@pytest.mark.parametrize("change, words", [
    (lambda a: (a[0][..., :2], *a[1:]), "shape (N, 32, 32, 3)"),
    (lambda a: (a[0].astype(np.float32), *a[1:]), "uint8"),
    (lambda a: (a[0], a[1][:-1], *a[2:]), "labels must have shape"),
    (lambda a: (*a[:3], a[3] + 10), "labels must lie in [0, 10)"),
])
def test_bad_arrays_are_refused_and_nothing_is_written(tmp_path, change, words):
    arrays = change(_arrays())
    with pytest.raises(NolbError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        write_cifar10_batches(tmp_path, *arrays, [str(i) for i in range(10)])
    assert list(tmp_path.iterdir()) == []


def test_an_existing_layout_is_not_overwritten(tmp_path):
    write_cifar10_batches(tmp_path, *_arrays(seed=1), [str(i) for i in range(10)])
    before = (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes()
    with pytest.raises(NolbError, match="already exists"):
        write_cifar10_batches(tmp_path, *_arrays(seed=2), [str(i) for i in range(10)])
    assert (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes() == before
