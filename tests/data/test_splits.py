"""Splits as data: no image in two roles, at IR 100 and IR 1, and the errors when one would be."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from nolb.cli import main
from nolb.data import build_data, check_disjoint, read_splits, write_splits
from nolb.data.fashion_mnist import DEFAULT_ROOT
from nolb.errors import NolbError


def _assert_disjoint_and_complete(data):
    ids = {s: data.splits[s] for s in ("train", "val", "test")}
    for split, names in ids.items():  # every image of a split named once, the count matching the dataset
        assert len(names) == len(set(names)) == (len(getattr(data, split)) if getattr(data, split) else 0)
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not set(ids[a]) & set(ids[b]), f"{a} and {b} share images"
    assert set(data.splits["sources"]) == {"train", "val", "test"}


def _raw_cifar(root, split):
    folder = root / "cifar-10-batches-py"
    files = [f"data_batch_{b}" for b in range(1, 6)] if split == "train" else ["test_batch"]
    x, y = [], []
    for name in files:
        with open(folder / name, "rb") as f:
            entry = pickle.load(f)
        x.append(entry["data"])
        y += entry["labels"]
    return np.concatenate(x).reshape(-1, 3, 32, 32), np.asarray(y)


@pytest.mark.parametrize("ir", [100, 1])
def test_cifar10_lt_splits_disjoint_and_identities_name_the_images(cifar10_root, ir):
    data = build_data("cifar10_lt", root=cifar10_root, imbalance_ratio=ir)
    _assert_disjoint_and_complete(data)
    raw = {s: _raw_cifar(cifar10_root, s) for s in ("train", "test")}
    for split in ("train", "val", "test"):  # "train:i" / "test:i" is row i of that official array
        ds = getattr(data, split)
        for k in np.random.RandomState(0).choice(len(ds), 50, replace=False):
            part, row = data.splits[split][k].split(":")
            np.testing.assert_array_equal(ds.images[k].numpy(), raw[part][0][int(row)])
            assert int(ds.labels[k]) == raw[part][1][int(row)]
    held = 100 if ir == 100 else 1000  # IR 1 keeps every training image: all validation from test
    assert len(data.test) == 10000 - held and len(data.val) == 1000
    assert data.info["test_source"] == f"{10000 - held:,} of the 10,000 official test images; {held:,} are validation"
    assert not any(i.startswith("train:") for i in data.splits["val"]) or ir == 100


@pytest.mark.parametrize("ir", [100, 1])
def test_fashion_mnist_lt_splits_disjoint(ir):
    if not (DEFAULT_ROOT and __import__("pathlib").Path(DEFAULT_ROOT, "train-images-idx3-ubyte.gz").is_file()):
        pytest.skip(f"Fashion-MNIST IDX files not installed in {DEFAULT_ROOT}")
    data = build_data("fashion_mnist_lt", imbalance_ratio=ir)
    _assert_disjoint_and_complete(data)
    assert np.bincount(data.val.labels.numpy(), minlength=10).tolist() == [100] * 10
    assert len(data.test) == (9900 if ir == 100 else 9000)


@pytest.mark.parametrize("ir", [100, 1])
def test_digits_lt_splits_disjoint(ir):
    from sklearn.datasets import load_digits

    data = build_data("digits_lt", imbalance_ratio=ir)
    _assert_disjoint_and_complete(data)
    images = np.rint(load_digits().images * (255.0 / 16.0)).astype(np.uint8)
    for k, identity in enumerate(data.splits["test"][:20]):
        np.testing.assert_array_equal(data.test.images[k, 0].numpy(), images[int(identity.split(":")[1])])


def test_borrowing_training_images_is_explicit_and_marked(cifar10_root):
    data = build_data("cifar10_lt", root=cifar10_root, imbalance_ratio=100, val_source="borrow_train")
    shared = set(data.splits["train"]) & set(data.splits["val"])
    assert len(shared) == 100 and data.info["val_borrowed_from_train"] == {"0": 100}
    assert "ALSO USED FOR TRAINING" in data.info["val_source"] and len(data.test) == 10000
    with pytest.raises(NolbError, match=r"image 'train:\d+' is in both train and val"):
        check_disjoint(data.splits)  # build_data accepted it only because borrowing was asked for


def test_check_disjoint_names_the_image():
    with pytest.raises(NolbError, match=r"image 'b' is in both train and test"):
        check_disjoint({"train": ["a", "b"], "val": ["c"], "test": ["b"]})
    with pytest.raises(NolbError, match=r"image 'c' is twice in val"):
        check_disjoint({"train": [], "val": ["c", "c"], "test": []})


def _folder(root, splits=("train", "val"), per_class=(6, 5)):
    for split in splits:
        for c, n in zip(("cat", "dog"), per_class):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (4, 4), (i, 0, 0)).save(root / split / c / f"{i}.png")


def test_image_folder_without_test_never_reports_val_as_test(tmp_path):
    _folder(tmp_path)
    data = build_data("image_folder", root=tmp_path)
    _assert_disjoint_and_complete(data)
    val, test = set(data.splits["val"]), set(data.splits["test"])
    assert val | test == {f"val/{c}/{i}.png" for c, n in (("cat", 6), ("dog", 5)) for i in range(n)}
    assert len(val) == 3 + 2 and len(test) == 3 + 3  # floor(n/2) per class select, the rest is reported
    assert data.test.paths == data.splits["test"] and "carved per class" in data.info["test_source"]
    again = build_data("image_folder", root=tmp_path)
    assert again.splits["test"] == data.splits["test"]  # seeded
    with pytest.raises(NolbError, match=r"^no test split: add a .*test/ folder, or pass missing_test=carve"):
        build_data("image_folder", root=tmp_path, missing_test="error")


def test_list_file_naming_an_image_in_two_splits_is_refused(tmp_path):
    for i in range(3):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    (tmp_path / "train.txt").write_text("0.png 0\n1.png 1\n")
    (tmp_path / "val.txt").write_text("2.png 0\n1.png 1\n")
    (tmp_path / "test.txt").write_text("2.png 0\n")
    with pytest.raises(NolbError, match="image '1.png' is in both train and val"):
        build_data("list_file", root=tmp_path, train_list=tmp_path / "train.txt", val_list=tmp_path / "val.txt",
                   test_list=tmp_path / "test.txt")


def test_inat_style_lists_carve_validation_and_test(tmp_path, monkeypatch):
    from nolb.data import list_file

    # iNat's own layout (train + val lists, no test list), shrunk to 4 classes
    monkeypatch.setitem(list_file.BENCHMARKS, "inat2018", (4, *list_file.BENCHMARKS["inat2018"][1:]))
    (tmp_path / "iNaturalist18_train.txt").write_text("".join(f"t{i}.jpg {i % 4}\n" for i in range(8)))
    (tmp_path / "iNaturalist18_val.txt").write_text("".join(f"v{i}.jpg {i % 4}\n" for i in range(12)))
    fields = list_file.build_benchmark_lists("inat2018", root=tmp_path)
    assert len(fields["val"]) == 4 and len(fields["test"]) == 8  # 3 per class: 1 selects, 2 are reported
    assert not set(fields["splits"]["val"]) & set(fields["splits"]["test"])


def test_splits_file_round_trip_and_bad_files(tmp_path):
    data = build_data("digits_lt")
    path = write_splits(tmp_path / "splits.json", data.splits)
    record = read_splits(path, known=data.splits)
    assert record["test"] == data.splits["test"] and record["sources"] == data.splits["sources"]
    bad = dict(record, val=record["val"] + ["digits:99999"])
    (tmp_path / "unknown.json").write_text(json.dumps(bad))
    with pytest.raises(NolbError, match=r"unknown.json: val names unknown image 'digits:99999'"):
        read_splits(tmp_path / "unknown.json", known=data.splits)
    (tmp_path / "overlap.json").write_text(json.dumps(dict(record, test=record["test"] + record["train"][:1])))
    with pytest.raises(NolbError, match=r"overlap.json: splits: image 'digits:\d+' is in both train and test"):
        read_splits(tmp_path / "overlap.json")


def test_cli_writes_splits_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "splits.json"
    assert main(["data", "info", "digits_lt", "--imbalance-ratio", "1", "--splits", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record == json.loads(json.dumps(build_data("digits_lt", imbalance_ratio=1).splits))
    assert "val from" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["data", "info", "digits_lt", "--splits", str(out)]) == 2  # exists, no --force
    assert out.read_bytes() == before
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists" in err


def test_cli_test_slice_larger_than_test_set_is_one_line(cifar10_root, tmp_path, capsys):
    out = tmp_path / "splits.json"
    code = main(["data", "info", "cifar10_lt", "--root", str(cifar10_root), "--imbalance-ratio", "1",
                 "--val-per-class", "1001", "--splits", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and not out.exists()
    assert "class 0 needs 1001 validation images from the official test set, which has only 1000" in err


def test_cli_image_folder_without_test_and_missing_test_error(tmp_path, capsys):
    _folder(tmp_path)
    assert main(["data", "info", "image_folder", "--root", str(tmp_path), "--missing-test", "error"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no test split" in err and "test/ folder" in err
    assert main(["data", "info", "image_folder", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test from        6 of the 11 images of" in out and "none of them is validation" in out


def test_image_folder_with_no_test_and_empty_val_is_one_line(tmp_path):
    _folder(tmp_path, splits=("train",))
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(NolbError, match=r"^no test split and no validation split to carve one from: add a .*test/ folder$"):
        build_data("image_folder", root=tmp_path)
