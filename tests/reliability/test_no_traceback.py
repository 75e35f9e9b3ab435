"""Issue 14, defect 7: no traceback reaches a user.  Bad input is one line with exit code 2;
an environment fault (read-only folder, disk full, a file where a folder should be) is one
plain line with exit code 1.  Nothing that existed before is changed."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from .conftest import assert_one_line_error, tree_hashes

TINY = ["train.epochs=1", "model.options={width: 8}"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from nolb.config import load_config
    from nolb.engine import train

    out = tmp_path_factory.mktemp("tb") / "run"
    train(load_config("digits_lt", TINY), run_dir=out, quiet=True)
    return out


def assert_environment_fault(rc: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and rc == 1 and len(lines) == 1, (rc, err)
    assert lines[0].startswith("nolb: error: ")
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def _pred(tmp_path: Path) -> Path:
    path = tmp_path / "p.npz"
    np.savez(path, labels=np.repeat(np.arange(3), 4), logits=np.random.default_rng(0).standard_normal((12, 3)))
    return path


def _swap_in_other_architecture(run: Path, kind: str = "last") -> None:
    """Replace the run's checkpoint by a width-4 model's weights, with a matching SHA-256."""
    import hashlib

    from nolb.config import load_config
    from nolb.models import build_model, save_weights

    options = dict(load_config("digits_lt").model.options, width=4)
    save_weights(run / "checkpoints" / f"{kind}.safetensors", build_model("small_cnn", 10, in_channels=1, **options))
    record = json.loads((run / "checkpoints" / f"{kind}.json").read_text())
    digest = hashlib.sha256((run / "checkpoints" / f"{kind}.safetensors").read_bytes()).hexdigest()
    record["files"]["weights"]["sha256"] = digest
    (run / "checkpoints" / f"{kind}.json").write_text(json.dumps(record))


@pytest.mark.timeout(90)
def test_resume_from_a_checkpoint_of_another_architecture(tmp_path, run_cli, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _swap_in_other_architecture(run)
    rc, _, err = run_cli(["train", "--resume", run, "--quiet"])
    assert_one_line_error(rc, err, "last.safetensors", "architecture")


@pytest.mark.timeout(120)
def test_retrain_from_a_checkpoint_of_another_architecture(tmp_path, run_cli, tiny_run):
    pytest.importorskip("nolb.retrain.pipeline")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for kind in ("best", "last"):
        if (run / "checkpoints" / f"{kind}.json").is_file():
            _swap_in_other_architecture(run, kind)
    rc, _, err = run_cli(["retrain", run, "retrain.epochs=1", "retrain.views=1"])
    assert_one_line_error(rc, err, "architecture")


@pytest.mark.timeout(60)
def test_corrupt_log_line_on_resume(tmp_path, run_cli, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "log.jsonl").write_text((run / "log.jsonl").read_text() + '{"epoch": 2, "train_lo\n')
    before = tree_hashes(run)
    rc, _, err = run_cli(["train", "--resume", run, "--quiet"])
    assert_one_line_error(rc, err, "log.jsonl:2")
    assert tree_hashes(run) == before


@pytest.mark.timeout(60)
@pytest.mark.parametrize("recipe,needles", [
    (b"\x00\x01\xff\xfe binary \x89PNG", ["bad.yaml"]),
    (b"base: [digits_lt]\n", ["bad.yaml", "base"]),
    (b"base: digits_lt\ntrain: {seed: 99999999999999999999}\n", ["train.seed", "range"]),
    (b"base: digits_lt\ntrain: {epochs: 1.0e+30}\n", ["train.epochs", "range"]),
    (b"base: digits_lt\noptim: {lr: .inf}\n", ["optim.lr", "finite"]),
    (b"base: digits_lt\ntrain: {device: 'cuda:x'}\n", ["train.device"]),
    (b"base: digits_lt\ntrain: {device: 'cudafoo'}\n", ["train.device"]),
    (b"base: digits_lt\ntrain: {seed: -1}\n", ["train.seed"]),
    (b"[" * 5000 + b"]" * 5000, ["bad.yaml"]),
])
def test_bad_config_files_are_one_line(tmp_path, run_cli, recipe, needles):
    path = tmp_path / "bad.yaml"
    path.write_bytes(recipe)
    rc, _, err = run_cli(["train", path, "--out", tmp_path / "run", "--quiet"])
    assert_one_line_error(rc, err, *needles)
    assert not (tmp_path / "run").exists()


@pytest.mark.timeout(60)
def test_negative_bootstrap_seed(tmp_path, run_cli):
    rc, _, err = run_cli(["evaluate", _pred(tmp_path), "--bootstrap", "10", "--seed", "-1"])
    assert_one_line_error(rc, err, "--seed")


@pytest.mark.timeout(60)
def test_read_only_output_folder(tmp_path, run_cli, monkeypatch):
    """Root ignores folder permissions, so the read-only file system is simulated (EROFS)."""
    import nolb.io

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out.json"))

    monkeypatch.setattr(nolb.io.tempfile, "mkstemp", read_only)
    rc, _, err = run_cli(["evaluate", _pred(tmp_path), "--json", tmp_path / "out.json"])
    assert_environment_fault(rc, err, "out.json", "read-only")
    assert not (tmp_path / "out.json").exists()


@pytest.mark.timeout(60)
def test_disk_full(tmp_path, run_cli, monkeypatch):
    import nolb.io

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nolb.io.os, "fsync", full)
    (tmp_path / "out.json").write_text("old\n")
    rc, _, err = run_cli(["evaluate", _pred(tmp_path), "--json", tmp_path / "out.json", "--overwrite"])
    monkeypatch.undo()
    assert_environment_fault(rc, err, "no space left")
    assert (tmp_path / "out.json").read_text() == "old\n"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.timeout(60)
def test_a_file_as_parent_folder(tmp_path, run_cli):
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(["evaluate", _pred(tmp_path), "--json", tmp_path / "afile" / "out.json"])
    assert_one_line_error(rc, err, "afile")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.timeout(60)
def test_a_file_as_run_directory_parent(tmp_path, run_cli):
    (tmp_path / "afile").write_text("x")
    rc, _, err = run_cli(["train", "digits_lt", *TINY, "--out", tmp_path / "afile" / "run", "--quiet"])
    assert rc in (1, 2) and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "afile").read_text() == "x"
