"""List-file datasets (the real Places-LT lists), ImageFolder trees, relabelling and their errors."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from nolb.data import build_data, build_loader, read_list_file, write_label_mapping
from nolb.errors import NolbError


@pytest.fixture(scope="module")
def places_lists(shared_data):
    folder = shared_data / "splits"
    if not (folder / "Places_LT_train.txt").is_file():
        pytest.skip(f"{folder / 'Places_LT_train.txt'} not found")
    return folder


def _write_images(root, relative_paths, size=(20, 16)):
    rng = np.random.RandomState(0)
    for rel in relative_paths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_places_lt_train_list_profile(places_lists):
    samples = read_list_file(places_lists / "Places_LT_train.txt")
    counts = Counter(label for _, label in samples)  # independent count
    assert len(samples) == 62500 and len(counts) == 365
    assert max(counts.values()) == 4980 and min(counts.values()) == 5


def test_places_lt_build_and_load_a_few_images(places_lists, tmp_path):
    data = build_data("places_lt", root=tmp_path, lists_dir=places_lists, relabel_by_frequency=True)
    assert data.num_classes == 365 and len(data.train) == 62500
    assert len(data.val) == 7300 and len(data.test) == 36500
    counts = data.class_counts.numpy()
    assert counts.sum() == 62500 and counts[0] == 4980 and counts[-1] == 5 and np.all(np.diff(counts) <= 0)
    # the mapping sends every original label to its rank by frequency
    mapping = np.asarray(data.info["label_mapping"])
    original = Counter(label for _, label in read_list_file(places_lists / "Places_LT_train.txt"))
    for old, n in original.items():
        assert counts[mapping[old]] == n
    picked = [0, 100, 5000, 62499]
    _write_images(tmp_path, [data.train.paths[i] for i in picked])
    subset = torch.utils.data.Subset(data.train, picked)
    subset.labels = data.train.labels[picked]
    image, label = data.train[picked[1]]
    assert image.size == (20, 16) and image.mode == "RGB" and label == int(data.train.labels[picked[1]])
    loader = build_loader(subset, batch_size=2, train=False, preset="imagenet", mean=data.mean, std=data.std)
    x, y = next(iter(loader))
    assert x.shape == (2, 3, 224, 224) and torch.equal(y, data.train.labels[picked[:2]])
    train_loader = build_loader(subset, batch_size=4, train=True, preset="imagenet", mean=data.mean, std=data.std)
    assert next(iter(train_loader))[0].shape == (4, 3, 224, 224)
    with pytest.raises(NolbError, match="image file not found"):
        data.train[1]
    # saved mapping round-trips
    write_label_mapping(tmp_path / "mapping.json", mapping, data.class_names)
    saved = json.loads((tmp_path / "mapping.json").read_text())
    assert saved["new_label_of_old"] == mapping.tolist()
    assert [saved["new_label_of_old"][o] for o in saved["old_label_of_new"]] == list(range(365))


@pytest.mark.parametrize("content,message", [
    ("a.jpg 0\nb.jpg\n", r"train.txt:2: expected '<relative/path> <label>'"),
    ("a.jpg 0\n\nb.jpg x\n", r"train.txt:3: label 'x' is not an integer"),
    ("a.jpg 0\nb.jpg -1\n", r"train.txt:2: label -1 out of range"),
])
def test_malformed_lines_name_file_and_line(tmp_path, content, message):
    (tmp_path / "train.txt").write_text(content)
    with pytest.raises(NolbError, match=message):
        build_data("list_file", root=tmp_path, train_list=tmp_path / "train.txt", test_list=tmp_path / "train.txt")


def test_label_out_of_range_in_test_list(tmp_path):
    (tmp_path / "train.txt").write_text("a.jpg 0\nb.jpg 1\n")
    (tmp_path / "test.txt").write_text("a.jpg 0\nc.jpg 2\n")
    with pytest.raises(NolbError, match=r"test.txt:2: label 2 out of range 0..1"):
        build_data("list_file", root=tmp_path, train_list=tmp_path / "train.txt", test_list=tmp_path / "test.txt")


def test_custom_list_counts_and_corrupt_image(tmp_path):
    (tmp_path / "train.txt").write_text("img/a b.png 1\nimg/c.png 1\nimg/d.png 0\nimg/bad.png 2\n")
    (tmp_path / "test.txt").write_text("img/e.png 0\n")
    _write_images(tmp_path, ["img/a b.png", "img/c.png", "img/d.png", "img/e.png"])
    (tmp_path / "img" / "bad.png").write_bytes(b"not a png")
    data = build_data("list_file", root=tmp_path, train_list=tmp_path / "train.txt", test_list=tmp_path / "test.txt")
    assert data.class_counts.tolist() == [1, 2, 1] and data.info["sizes"]["train"] == 4
    assert data.train[0][1] == 1 and data.train.paths[0] == "img/a b.png"
    with pytest.raises(NolbError, match=r"bad.png: unreadable or corrupt image"):
        data.train[3]
    with pytest.raises(NolbError, match="image 'img/a b.png' is in both train and test"):  # one image, two roles
        build_data("list_file", root=tmp_path, train_list=tmp_path / "train.txt", test_list=tmp_path / "train.txt")
    with pytest.raises(NolbError, match="image root folder not found"):
        build_data("list_file", root=tmp_path / "nope", train_list=tmp_path / "train.txt")
    with pytest.raises(NolbError, match="missing.txt: list file not found"):
        build_data("list_file", root=tmp_path, train_list=tmp_path / "missing.txt")


def test_image_folder_tree(tmp_path):
    layout = {"train/cat": 3, "train/dog": 5, "train/eel": 1, "test/cat": 1, "test/dog": 1, "test/eel": 2}
    _write_images(tmp_path, [f"{folder}/{i}.png" for folder, n in layout.items() for i in range(n)], size=(8, 8))
    data = build_data("image_folder", root=tmp_path, relabel_by_frequency=True)
    assert data.class_names == ["dog", "cat", "eel"] and data.class_counts.tolist() == [5, 3, 1]
    assert data.val is None and len(data.test) == 4
    assert sorted(data.test.labels.tolist()) == [0, 1, 2, 2]
    (tmp_path / "test" / "fox").mkdir()
    with pytest.raises(NolbError, match="fox: class folder not present in the training split"):
        build_data("image_folder", root=tmp_path)
