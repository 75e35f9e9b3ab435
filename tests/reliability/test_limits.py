"""Issue 14, defects 5 and 8: no silent wrong numbers and no unbounded work.

Training counts that do not fit int64 are refused (1e30 used to wrap negative and put the
class in "Few"); two evaluated files with one name stem keep two rows; a key given twice
in YAML is refused; YAML alias bombs, ``--bootstrap``, ``--num-classes`` and array sizes
have limits named in a one-line error (with the environment variable that raises them);
``nolb evaluate`` reads only the arrays it uses.
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from .conftest import assert_one_line_error, tree_hashes

LABELS = np.repeat(np.arange(3), 4)


def _pred(path: Path, seed: int = 0, **extra) -> Path:
    logits = np.random.default_rng(seed).standard_normal((12, 3))
    np.savez(path, labels=LABELS, logits=logits, **extra)
    return path


# ------------------------------------------------------------------- defect 5: wrong numbers
@pytest.mark.parametrize("count", [1e30, 2.0**63, 2.0**70])
def test_huge_training_counts_are_refused(tmp_path, run_cli, count):
    path = _pred(tmp_path / "p.npz", train_counts=np.array([count, 50.0, 5.0]))
    rc, _, err = run_cli(["evaluate", path])
    assert_one_line_error(rc, err, "train_counts")


def test_huge_training_counts_are_refused_by_the_api():
    from nolb.errors import NolbError
    from nolb.metrics import recall_report

    with pytest.raises(NolbError, match="train_counts"):
        recall_report(LABELS, LABELS, num_classes=3, train_counts=np.array([1e30, 50, 5]))


def test_files_with_the_same_stem_keep_their_own_rows(tmp_path, run_cli):
    """``p.npz`` and ``p.npy`` (an .npz under another suffix) used to collapse into one row."""
    first = _pred(tmp_path / "p.npz", seed=0)
    second = tmp_path / "p.npy"
    second.write_bytes(_pred(tmp_path / "other.npz", seed=1).read_bytes())
    third = first  # the same file twice is two rows as well
    out = tmp_path / "out.json"
    rc, stdout, err = run_cli(["evaluate", first, second, third, "--json", out])
    assert rc == 0, err
    files = json.loads(out.read_text())["files"]
    assert len(files) == 3
    from nolb.metrics import recall_report

    for entry in files.values():
        with np.load(entry["path"]) as data:
            expected = recall_report(data["labels"], data["logits"], num_classes=3)
        assert entry["am"] == pytest.approx(expected.am)


def test_duplicate_yaml_keys_are_refused(tmp_path, run_cli):
    recipe = tmp_path / "dup.yaml"
    recipe.write_text("base: digits_lt\ntrain:\n  epochs: 1\n  batch_size: 8\n  epochs: 300\n")
    rc, _, err = run_cli(["train", recipe, "--out", tmp_path / "run"])
    assert_one_line_error(rc, err, "dup.yaml:5", "duplicate key 'epochs'")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------- defect 8: unbounded work
_BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"] +
                  [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
                   f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
                   for i in range(8)]) + "\ntrain: {epochs: 1}\n"


@pytest.mark.timeout(30)
def test_yaml_alias_bomb_is_refused_quickly(tmp_path, run_cli):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(_BOMB)  # 10**9 leaves once expanded, a few hundred bytes on disk
    started = time.perf_counter()
    rc, _, err = run_cli(["train", recipe, "--out", tmp_path / "run"])
    assert_one_line_error(rc, err, "bomb.yaml", "NOLB_MAX_YAML_NODES")
    assert time.perf_counter() - started < 10


def test_oversized_yaml_is_refused(tmp_path, run_cli, monkeypatch):
    recipe = tmp_path / "big.yaml"
    recipe.write_text("train:\n  epochs: 1\n" + "# padding\n" * 200)
    monkeypatch.setenv("NOLB_MAX_YAML_BYTES", "1000")
    rc, _, err = run_cli(["train", recipe, "--out", tmp_path / "run"])
    assert_one_line_error(rc, err, "big.yaml", "NOLB_MAX_YAML_BYTES")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("argv,needles", [
    (["--bootstrap", "1000000000"], ["--bootstrap", "NOLB_MAX_BOOTSTRAP"]),
    (["--num-classes", "10000000"], ["--num-classes", "NOLB_MAX_CLASSES"]),
    (["--num-classes", "0"], ["--num-classes"]),
])
def test_evaluate_options_have_limits(tmp_path, run_cli, argv, needles):
    path = tmp_path / "p.npz"
    np.savez(path, labels=LABELS, pred=LABELS)
    started = time.perf_counter()
    rc, _, err = run_cli(["evaluate", path, *argv])
    assert_one_line_error(rc, err, *needles)
    assert time.perf_counter() - started < 10


def test_class_count_from_a_file_is_bounded(tmp_path, run_cli):
    path = tmp_path / "wide.npz"
    np.savez(path, labels=np.zeros(1, np.int64), logits=np.zeros((1, 40_000), np.float32))
    rc, _, err = run_cli(["evaluate", path])
    assert_one_line_error(rc, err, "wide.npz", "NOLB_MAX_CLASSES")


def test_unrelated_arrays_are_never_read(tmp_path, run_cli):
    """An unused member that cannot even be parsed (standing for a 512 MB array) is not read."""
    path = _pred(tmp_path / "p.npz")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("embeddings.npy", b"\x93NUMPY garbage that np.load cannot parse" * 1000)
    rc, _, err = run_cli(["evaluate", path])
    assert rc == 0, err


def test_needed_arrays_are_size_checked_before_reading(tmp_path, run_cli, monkeypatch):
    path = _pred(tmp_path / "p.npz")
    monkeypatch.setenv("NOLB_MAX_ARRAY_BYTES", "300")  # labels: 224 bytes, logits: 416
    before = tree_hashes(tmp_path)
    rc, _, err = run_cli(["evaluate", path])
    assert_one_line_error(rc, err, "p.npz", "logits", "NOLB_MAX_ARRAY_BYTES")
    assert tree_hashes(tmp_path) == before
