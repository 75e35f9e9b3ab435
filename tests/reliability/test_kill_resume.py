"""Kill and resume, non-finite losses, determinism of `nolb train` (tiny digits_lt run, CPU fp32).

* ``nolb train`` is SIGKILLed at seeded random moments and resumed with ``--resume`` each
  time: the run completes, no file in the run directory is ever truncated (JSON parses,
  safetensors load, checkpoint hashes verify) and the final weights and metrics equal those
  of an uninterrupted run with the same seed (``torch.equal``).
* An interruption in the two windows a random kill rarely hits (between a checkpoint's
  tensors and its JSON; before the first checkpoint) is injected in-process; resume must
  still complete and give the same weights.
* A NaN loss stops training with one line naming epoch and step; the last good checkpoint
  stays loadable.
* Same seed and config twice: identical weights and metrics.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from .conftest import assert_one_line_error, cli_env

EPOCHS = 6
OVERRIDES = [f"train.epochs={EPOCHS}", "model.options={width: 8}", "train.eval_every=1", "optim.lr=0.1",
             "train.select_metric=am"]
VOLATILE = {"images_per_second", "seconds", "saved_utc"}


@pytest.fixture(autouse=True)
def _one_thread():
    """Subprocesses run with OMP_NUM_THREADS=1; in-process runs must reduce in the same order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train_in_process(out: Path, **kwargs):
    from nolb.config import load_config
    from nolb.engine import train

    # one thread, as the CLI children get (OMP_NUM_THREADS=1): the same float reduction order
    return train(load_config("digits_lt", [*OVERRIDES, "train.threads=1"]), run_dir=out, quiet=True, **kwargs)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_in_process(out)
    finally:
        torch.set_num_threads(threads)
    return out


def _weights(run: Path, kind: str) -> dict[str, torch.Tensor]:
    from nolb.io import load_safetensors

    return load_safetensors(run / "checkpoints" / f"{kind}.safetensors")[0]


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _epoch_seconds(run: Path) -> float:
    """About the wall time of one epoch of ``run`` (training, plus a margin for validation
    and checkpointing), from its log."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return 1.3 * sum(r["seconds"] for r in records) / len(records)


def assert_same_run(run: Path, reference: Path) -> None:
    for kind in ("last", "best"):
        mine, theirs = _weights(run, kind), _weights(reference, kind)
        assert mine.keys() == theirs.keys()
        for key in theirs:
            assert torch.equal(mine[key], theirs[key]), f"{kind}: {key} differs"
    assert _strip(json.loads((run / "metrics.json").read_text())) == _strip(json.loads((reference / "metrics.json").read_text()))
    assert (run / "per_class.csv").read_text() == (reference / "per_class.csv").read_text()
    log = [_strip(json.loads(line)) for line in (run / "log.jsonl").read_text().splitlines()]
    ref = [_strip(json.loads(line)) for line in (reference / "log.jsonl").read_text().splitlines()]
    assert log == ref


def assert_nothing_truncated(run: Path) -> None:
    """Every file of the run directory is complete; the checkpoints verify against their JSON."""
    from nolb.engine.run_dir import RunDir
    from nolb.io import load_safetensors

    for path in sorted(run.rglob("*")):
        if not path.is_file() or path.name.endswith(".tmp"):
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif path.suffix == ".yaml":
            assert isinstance(yaml.safe_load(path.read_text()), dict), path
        elif path.suffix == ".safetensors":
            load_safetensors(path)
        elif path.suffix == ".csv":
            text = path.read_text()
            assert text.endswith("\n") and text.count("\n") >= 2, path
    for kind in ("last", "best"):
        if (run / "checkpoints" / f"{kind}.json").is_file():
            RunDir(run, resume=True, writer=False).load_checkpoint(kind)


@pytest.mark.timeout(150)
def test_sigkill_at_random_moments_then_resume(tmp_path, baseline):
    rng = random.Random(7)
    run = tmp_path / "run"
    first = [sys.executable, "-m", "nolb", "train", "digits_lt", *OVERRIDES, "--out", str(run), "--quiet"]
    resume = [sys.executable, "-m", "nolb", "train", "--resume", str(run), "--quiet"]
    kills, attempts, errors, resumed_from = 0, 0, [], []
    while True:
        attempts += 1
        assert attempts <= 12, f"the run never completed; errors: {errors}"
        command = first if attempts == 1 else resume
        child = subprocess.Popen(command, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Kill at a seeded random moment: once the run has reached a target epoch (the one it
        # resumes at, or the next), after a random pause; no kill once the plan is used up.
        last = run / "checkpoints" / "last.json"

        def epoch_done() -> int:
            return json.loads(last.read_text())["epoch"] if last.is_file() else 0

        target = epoch_done() + rng.choice((1, 1, 1, 0))
        epoch_seconds = _epoch_seconds(baseline)
        killed = False
        if kills < 3 and target < EPOCHS:
            deadline = time.monotonic() + 90
            while child.poll() is None and time.monotonic() < deadline and not (
                    (run / "config.yaml").is_file() and epoch_done() >= target):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, epoch_seconds))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                killed = True
                kills += 1
        out, err = child.communicate(timeout=120)
        assert_nothing_truncated(run)
        if killed:
            last = run / "checkpoints" / "last.json"
            resumed_from.append(json.loads(last.read_text())["epoch"] if last.is_file() else 0)
        else:
            assert child.returncode == 0, f"attempt {attempts} failed:\n{err}"
            break
    assert kills >= 2, "the seeded kill times never hit a running process"
    assert any(0 < e < EPOCHS for e in resumed_from), f"no kill landed mid-run (epochs at the kills: {resumed_from})"
    assert_same_run(run, baseline)
    litter = sorted(str(p.relative_to(run)) for p in run.rglob("*.tmp"))
    assert not litter, f"temporary files of killed writes left behind: {litter}"


class _Interrupted(BaseException):
    """Stands for a SIGKILL at one precise moment (raised from inside the trainer)."""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["last", "best"])
def test_interrupt_between_checkpoint_tensors_and_json(tmp_path, baseline, monkeypatch, kind):
    """The state JSON is written after the tensors: stop right before an epoch's JSON (for
    "best", the last epoch after the first at which the baseline saved a new best)."""
    import nolb.engine.run_dir as run_dir_module

    if kind == "last":
        epoch = 2
    else:
        records = [json.loads(line) for line in (baseline / "log.jsonl").read_text().splitlines()]
        scores = [r["val"]["am"] for r in records]
        improved = [i + 1 for i, s in enumerate(scores) if s > max(scores[:i], default=-1.0)]
        assert len(improved) >= 2, f"the baseline never improved after epoch 1: {scores}"
        epoch = improved[-1]
    real_write_json = run_dir_module.write_json

    def write_json(path, obj):
        if Path(path).name == f"{kind}.json" and obj.get("epoch") == epoch:
            raise _Interrupted()
        real_write_json(path, obj)

    run = tmp_path / "run"
    monkeypatch.setattr(run_dir_module, "write_json", write_json)
    with pytest.raises(_Interrupted):
        _train_in_process(run)
    monkeypatch.setattr(run_dir_module, "write_json", real_write_json)
    assert_nothing_truncated(run)
    _train_in_process(run, resume=True)
    assert_same_run(run, baseline)


@pytest.mark.timeout(60)
def test_interrupt_before_the_first_checkpoint(tmp_path, baseline, monkeypatch):
    """Killed during epoch 1 (config.yaml written, no checkpoint yet): --resume starts it over."""
    import nolb.engine.trainer as trainer_module

    real = trainer_module.train_one_epoch

    def interrupted(*args, **kwargs):
        raise _Interrupted()

    run = tmp_path / "run"
    monkeypatch.setattr(trainer_module, "train_one_epoch", interrupted)
    with pytest.raises(_Interrupted):
        _train_in_process(run)
    monkeypatch.setattr(trainer_module, "train_one_epoch", real)
    assert (run / "config.yaml").is_file()
    _train_in_process(run, resume=True)
    assert_same_run(run, baseline)


@pytest.mark.timeout(60)
def test_nan_loss_stops_with_epoch_and_step(tmp_path, run_cli, monkeypatch):
    """A loss that turns NaN at epoch 2, step 3: one line naming both; the epoch-1 checkpoint stays."""
    import nolb.engine.components as components
    from nolb.engine.run_dir import RunDir

    real_build = components.build_loss_from_config

    class NanAt(torch.nn.Module):
        def __init__(self, inner, steps_per_epoch):
            super().__init__()
            self.inner, self.calls, self.bad = inner, 0, steps_per_epoch + 3

        def forward(self, logits, target):
            self.calls += 1
            loss = self.inner(logits, target)
            return loss * float("nan") if self.calls == self.bad else loss

    # digits_lt: 335 training images, batch 32 -> 11 steps per epoch (drop_last keeps 10 or 11)
    from nolb.config import load_config
    from nolb.engine import components as build

    config = load_config("digits_lt", OVERRIDES)
    data = build.build_data_from_config(config)
    loader, _ = build.build_loaders(config, data, device=torch.device("cpu"), rank=0, world_size=1)
    steps = len(loader)
    monkeypatch.setattr(components, "build_loss_from_config", lambda c, d: NanAt(real_build(c, d), steps))
    run = tmp_path / "run"
    rc, _, err = run_cli(["train", "digits_lt", *OVERRIDES, "--out", run, "--quiet"])
    line = assert_one_line_error(rc, err, "epoch 2", "step 3")
    assert "nan" in line.lower()
    state, weights, _ = RunDir(run, resume=True, writer=False).load_checkpoint("last")
    assert state["epoch"] == 1 and weights
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert not (run / "metrics.json").exists()


@pytest.mark.timeout(60)
def test_absurd_learning_rate_stops_cleanly(tmp_path, run_cli):
    """optim.lr=1e11 (below the 1e12 config bound) blows the loss up: either a one-line
    non-finite-loss error or a finished run whose outputs are all finite -- never a traceback or a NaN in a report."""
    run = tmp_path / "run"
    rc, _, err = run_cli(["train", "digits_lt", "train.epochs=2", "model.options={width: 8}", "optim.lr=1e11",
                          "optim.warmup_epochs=0", "--out", run, "--quiet"])
    if rc != 0:
        assert_one_line_error(rc, err, "epoch", "step", "non-finite")
        if (run / "checkpoints" / "last.json").is_file():
            assert_nothing_truncated(run)
    else:
        assert "Traceback" not in err
        assert_nothing_truncated(run)


@pytest.mark.timeout(60)
def test_same_seed_twice_is_identical(tmp_path, baseline):
    _train_in_process(tmp_path / "again")
    assert_same_run(tmp_path / "again", baseline)
    info = json.loads((baseline / "run.json").read_text())
    assert info["seed"] == 0 and "environment" in info and "git" in info
    assert yaml.safe_load((baseline / "config.yaml").read_text())["train"]["epochs"] == EPOCHS


@pytest.mark.timeout(150)
def test_retrain_sigkill_then_rerun_matches(tmp_path, baseline, run_cli):
    """`nolb retrain` killed at seeded random moments (during feature extraction, head
    training or report writing) and simply rerun: it completes, every file is whole, a
    partial feature cache is rebuilt, and the head equals an uninterrupted run's."""
    from nolb.io import load_safetensors

    args = ["retrain", str(baseline), "retrain.epochs=3", "retrain.views=2", "retrain.select_on_val=false"]
    ref = tmp_path / "ref"
    start = time.perf_counter()
    rc, _, err = run_cli([*args, "--out", ref])
    assert rc == 0, err
    reference_seconds = time.perf_counter() - start
    out = tmp_path / "out"
    rng = random.Random(11)
    kills = 0
    for attempt in range(6):
        child = subprocess.Popen([sys.executable, "-m", "nolb", *args, "--out", str(out)], cwd=tmp_path,
                                 env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        killed = False
        if kills < 3:
            # wait for the first sign of work (the feature folder), then a random pause
            deadline = time.monotonic() + 60
            while child.poll() is None and not (out / "features").exists() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, reference_seconds))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                killed, kills = True, kills + 1
        _, err = child.communicate(timeout=120)
        assert_nothing_truncated(out)
        if not killed:
            assert child.returncode == 0, err
            break
    assert kills >= 1
    mine, theirs = load_safetensors(out / "heads" / "paper.safetensors")[0], \
        load_safetensors(ref / "heads" / "paper.safetensors")[0]
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert _strip(json.loads((out / "report" / "metrics.json").read_text())) == \
        _strip(json.loads((ref / "report" / "metrics.json").read_text()))


@pytest.mark.timeout(60)
def test_resume_removes_temporary_files_of_killed_writes(tmp_path, baseline):
    """A SIGKILL inside a checkpoint write leaves a model-sized ``.last.safetensors.*.tmp``
    (the rename never happened); resuming the run removes such leftovers."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    stale = [run / "checkpoints" / ".last.safetensors.k1ll3d.tmp", run / ".log.jsonl.k1ll3d.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 4096)
    _train_in_process(run, resume=True)
    assert not [p for p in stale if p.exists()]
    assert_same_run(run, baseline)
