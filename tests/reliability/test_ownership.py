"""Issue 14, defects 1, 2, 3 and 6: nolb deletes or replaces only what it made, a run
directory has one writer at a time, and a kill during the very first write leaves a folder
that the same command accepts again.

Each test failed on the code before issue 14 (see docs/RELIABILITY.md).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO_ROOT, assert_one_line_error, cli_env, tree_hashes

TINY = ["train.epochs=1", "model.options={width: 8}"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished one-epoch digits_lt run made by nolb (it holds the .nolb-run marker)."""
    from nolb.config import load_config
    from nolb.engine import train

    out = tmp_path_factory.mktemp("owned") / "run"
    train(load_config("digits_lt", TINY), run_dir=out, quiet=True)
    return out


def _train_argv(out: Path, *extra) -> list:
    return ["train", "digits_lt", *TINY, "--out", out, "--quiet", *extra]


# ----------------------------------------------------------------- defect 1: --overwrite
@pytest.mark.timeout(60)
@pytest.mark.parametrize("looks_like_run", ["config.yaml", "run.json"])
def test_overwrite_refuses_a_folder_nolb_did_not_make(tmp_path, run_cli, looks_like_run):
    """A user's folder that merely holds a config.yaml or run.json is never deleted."""
    mine = tmp_path / "my_project"
    mine.mkdir()
    (mine / looks_like_run).write_text("data: {name: digits_lt}\n")
    (mine / "thesis.tex").write_text("years of work\n")
    before = tree_hashes(mine)
    rc, _, err = run_cli(_train_argv(mine, "--overwrite"))
    assert_one_line_error(rc, err, "my_project", "not a nolb run directory")
    assert tree_hashes(mine) == before


@pytest.mark.timeout(90)
def test_overwrite_replaces_a_nolb_run_only_once_the_new_run_writes(tmp_path, run_cli, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = tree_hashes(run)
    missing = tmp_path / "none.safetensors"  # refused while the model is built, after the folder is claimed
    rc, _, err = run_cli(_train_argv(run, "--overwrite", f"model.weights={missing}"))
    assert_one_line_error(rc, err, "none.safetensors")
    assert tree_hashes(run) == before, "a refused --overwrite must leave the old run whole"
    (run / "notes.txt").write_text("stale\n")
    rc, _, err = run_cli(_train_argv(run, "--overwrite"))
    assert rc == 0, err
    assert not (run / "notes.txt").exists() and (run / "config.yaml").is_file() and (run / ".nolb-run").is_file()


@pytest.mark.timeout(90)
def test_overwrite_through_a_symlinked_out_gives_no_traceback(tmp_path, run_cli, tiny_run):
    """Defect 7 (symlinked --out with --overwrite) lives here: rmtree on a link raised OSError."""
    real = tmp_path / "real"
    shutil.copytree(tiny_run, real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    rc, _, err = run_cli(_train_argv(link, "--overwrite"))
    assert rc == 0, err
    assert link.is_symlink() and (real / "config.yaml").is_file()


# ------------------------------------------------------- defect 2: writes replace only files
def _pred(tmp_path: Path) -> Path:
    path = tmp_path / "p.npz"
    np.savez(path, labels=np.repeat(np.arange(3), 4), logits=np.random.default_rng(0).standard_normal((12, 3)))
    return path


@pytest.mark.timeout(60)
def test_overwrite_never_replaces_a_fifo(tmp_path, run_cli):
    """A FIFO stands for a device node (no root needed): it stays what it is."""
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    rc, _, err = run_cli(["evaluate", _pred(tmp_path), "--json", fifo, "--overwrite"])
    assert_one_line_error(rc, err, "out.json", "not a regular file")
    assert fifo.exists() and not fifo.is_file()


@pytest.mark.timeout(60)
def test_directory_as_json_output_is_refused(tmp_path, run_cli):
    folder = tmp_path / "out.json"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    for extra in ([], ["--overwrite"]):
        rc, _, err = run_cli(["evaluate", _pred(tmp_path), "--json", folder, *extra])
        assert_one_line_error(rc, err, "out.json")
    assert (folder / "keep.txt").read_text() == "x"


@pytest.mark.timeout(60)
def test_symlink_output_is_refused_and_its_target_kept(tmp_path, run_cli):
    target = tmp_path / "precious.json"
    target.write_text('{"keep": true}\n')
    link = tmp_path / "out.json"
    link.symlink_to(target)
    rc, _, err = run_cli(["evaluate", _pred(tmp_path), "--json", link, "--overwrite"])
    assert_one_line_error(rc, err, "out.json", "symbolic link")
    assert link.is_symlink() and target.read_text() == '{"keep": true}\n'


def test_atomic_write_refuses_special_files(tmp_path):
    from nolb.errors import NolbError
    from nolb.io import write_text

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NolbError, match="not a regular file"):
        write_text(fifo, "x")
    assert not fifo.is_file() and [p.name for p in tmp_path.iterdir()] == ["fifo"]


# ------------------------------------------------------------------- defect 3: one writer
_HOLD = """
import sys, time
from nolb.engine.run_dir import lock_run_dir
lock_run_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(120)
"""


def _holder(run: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], env=cli_env(), stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def _assert_refused_while_held(run: Path, run_cli, commands: list[list]) -> None:
    """While another process holds ``run``'s lock, each command is refused in one line and changes
    nothing; the holder is then killed (SIGKILL, so the OS drops its lock)."""
    before = tree_hashes(run)
    child = _holder(run)
    try:
        for argv in commands:
            rc, _, err = run_cli(argv)
            assert_one_line_error(rc, err, "in use by another nolb process")
        assert tree_hashes(run) == before
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.timeout(90)
def test_a_second_writer_is_refused_and_a_killed_holder_releases_the_lock(tmp_path, run_cli, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _assert_refused_while_held(run, run_cli, [["train", "--resume", run, "--quiet"], _train_argv(run, "--overwrite")])
    rc, _, err = run_cli(["train", "--resume", run, "--quiet"])  # the OS dropped the dead process's lock
    assert rc == 0, err


def test_stage_commands_on_a_locked_run_are_refused(tmp_path, run_cli, tiny_run):
    """`nolb retrain` / `nolb ensemble` / `nolb run --from-run` write into a finished run: they take
    its lock too, so a run another process holds is refused in one line and left unchanged."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _assert_refused_while_held(run, run_cli, [["retrain", run, "retrain.epochs=1"], ["ensemble", run],
                                              ["run", "--from-run", run, "--overwrite"]])


@pytest.mark.timeout(180)
def test_two_trainings_started_together_do_not_mix(tmp_path):
    """Two `nolb train --out Z` at the same moment: one runs, the other is refused at once."""
    out = tmp_path / "Z"
    argv = [sys.executable, "-m", "nolb", "train", "digits_lt", *TINY, "--out", str(out), "--quiet"]
    children = [subprocess.Popen([*argv, f"train.seed={seed}"], cwd=tmp_path, env=cli_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [(c.wait(timeout=170), c.stderr.read()) for c in children]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert_one_line_error(2, refused)
    winner = 1 if results[0][0] == 0 else 2
    import json

    import yaml

    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["seed"] == winner
    assert json.loads((out / "run.json").read_text())["seed"] == winner
    assert json.loads((out / "checkpoints" / "last.json").read_text())["epoch"] == 1


# ------------------------------------------------- defect 6: kill during the very first write
_KILL_IN_FIRST_WRITE = """
import os, signal, sys
import nolb.io
real = nolb.io.os.replace
def replace(src, dst, *a, **k):
    if str(dst).endswith("config.yaml"):
        os.kill(os.getpid(), signal.SIGKILL)  # the temp file is written, the rename never happens
    return real(src, dst, *a, **k)
nolb.io.os.replace = replace
from nolb.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.timeout(180)
def test_kill_during_the_first_write_leaves_a_reusable_folder(tmp_path, run_cli):
    out = tmp_path / "run"
    argv = [str(a) for a in _train_argv(out)]
    child = subprocess.run([sys.executable, "-c", _KILL_IN_FIRST_WRITE, *argv], cwd=REPO_ROOT, env=cli_env(),
                           capture_output=True, text=True, timeout=170)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert out.is_dir() and any(p.name.endswith(".tmp") for p in out.iterdir())
    rc, _, err = run_cli(["train", "--resume", out, "--quiet"])
    assert_one_line_error(rc, err, "without --resume")
    rc, _, err = run_cli(argv)  # the same command again: the half-made folder is reused
    assert rc == 0, err
    assert not [p for p in out.rglob("*.tmp")] and (out / "metrics.json").is_file()


def test_half_made_folder_is_replaceable_with_overwrite(tmp_path):
    from nolb.engine.run_dir import MARKER, RunDir

    out = tmp_path / "run"
    out.mkdir()
    (out / MARKER).write_text("nolb run directory 0\n")
    (out / ".config.yaml.abc123.tmp").write_text("half")
    for flags in ({}, {"overwrite": True}):
        RunDir(out, **flags).release()
    assert (out / ".config.yaml.abc123.tmp").exists()  # emptied only when the new run writes
    RunDir(out).write_run_info({"seed": 0})
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "run.json"]
