"""`nolb retrain --features`: every row reported; bad files give one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nolb.cli import main
from nolb.estimators.feature_files import read_feature_file, retrain_feature_files
from nolb.errors import NolbError


def _split(path, n_per_class, seed, key="logits", labels_as=None, dim=None):
    rng = np.random.default_rng(seed)
    classes = len(n_per_class)
    dim = dim or classes
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = np.random.default_rng(0).normal(0, 1.5, (classes, dim))
    feats = (centres[labels] + rng.normal(0, 1.0, (labels.size, dim))).astype(np.float32)
    values = labels if labels_as is None else np.asarray(labels_as)[labels]
    np.savez(path, **{key: feats, "labels": values})
    return path


@pytest.fixture
def files(tmp_path):
    train = _split(tmp_path / "train.npz", [60, 30, 12, 6], 1)
    val = _split(tmp_path / "val.npz", [10, 10, 10, 10], 2)
    test = _split(tmp_path / "test.npz", [15, 15, 15, 15], 3)
    return train, val, test


def test_cli_writes_every_row(files, tmp_path, capsys):
    train, val, test = files
    out = tmp_path / "out"
    assert main(["retrain", "--features", str(train), "--val", str(val), "--test", str(test), "--out", str(out),
                 "retrain.epochs=2"]) == 0
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert list(metrics) == ["base", "GML (paper)", "nolb (val-tuned GML)", "cRT", "tau-norm", "post-hoc LA"]
    for name in metrics:
        assert name in (out / "report" / "report.md").read_text()
    assert (out / "report" / "per_class.csv").read_text().count("\n") == 5
    record = json.loads((out / "retrain.json").read_text())
    assert record["init"] == "identity" and record["num_classes"] == 4
    assert (out / "heads" / "nolb__val_tuned_gml.safetensors").is_file()
    assert "nolb (val-tuned GML)" in capsys.readouterr().out
    # a second run refuses to overwrite; --overwrite replaces
    assert main(["retrain", "--features", str(train), "--val", str(val), "--test", str(test), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_string_labels_and_embeddings(tmp_path):
    names = ["ant", "bee", "cow"]
    train = _split(tmp_path / "a.npz", [40, 15, 5], 1, key="features", labels_as=names, dim=7)
    val = _split(tmp_path / "b.npz", [8, 8, 8], 2, key="features", labels_as=names, dim=7)
    test = _split(tmp_path / "c.npz", [9, 9, 9], 3, key="features", labels_as=names, dim=7)
    result = retrain_feature_files(train, val, test, None, epochs=2, log=lambda *_: None)
    assert "base" not in result.rows  # plain features have no base row
    assert result.record["init"] == "fresh"
    assert result.rows["cRT"].class_names == ("ant", "bee", "cow")


@pytest.mark.parametrize("arrays, match", [
    ({"labels": np.zeros(3)}, "exactly one of the arrays 'features' or 'logits'"),
    ({"features": np.zeros((3, 2)), "logits": np.zeros((3, 2)), "labels": np.zeros(3)}, "exactly one"),
    ({"features": np.zeros((3, 2))}, "no 'labels' array"),
    ({"features": np.zeros(3), "labels": np.zeros(3)}, "2-D"),
    ({"features": np.zeros((3, 2)), "labels": np.zeros(4)}, "one label per row"),
    ({"features": np.full((3, 2), np.nan), "labels": np.zeros(3)}, "NaN"),
    ({"features": np.zeros((3, 2)), "labels": np.zeros(3), "train_counts": np.array([0, 2])}, "train_counts"),
])
def test_bad_arrays(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(NolbError, match=match) as error:
        read_feature_file(path, "train")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_bad_files_and_mismatches(tmp_path, files, capsys):
    train, val, test = files
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert main(["retrain", "--features", str(tmp_path / "junk.npz"), "--val", str(val), "--test", str(test),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nolb: error: ") and "not a readable .npz" in err and err.count("\n") == 1
    with pytest.raises(NolbError, match="no such file"):
        retrain_feature_files(tmp_path / "missing.npz", val, test)
    wide = _split(tmp_path / "wide.npz", [10, 10, 10, 10], 2, dim=6)
    with pytest.raises(NolbError, match="columns"):
        retrain_feature_files(train, wide, test, log=lambda *_: None)
    other = _split(tmp_path / "other.npz", [5, 5, 5, 5, 5], 2, dim=4)
    with pytest.raises(NolbError, match="label 4 is not a class"):
        retrain_feature_files(train, other, test, log=lambda *_: None)
    assert main(["retrain", "--features", str(train), "--test", str(test)]) == 2
    assert "--val" in capsys.readouterr().err
