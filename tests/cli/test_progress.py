"""nolb.progress: plain timed lines off a terminal, silence when quiet and on ranks > 0."""

from __future__ import annotations

import io

import pytest

import nolb.progress as progress
from nolb.progress import Progress, track


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("RANK", "NOLB_QUIET", "NOLB_PROGRESS_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


def _lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_pipe_gets_start_timed_and_done_lines(monkeypatch):
    monkeypatch.setenv("NOLB_PROGRESS_SECONDS", "0")  # a line on every update
    out = _Pipe()
    with Progress(4, desc="features", unit="batch", stream=out) as bar:
        for step in range(4):
            bar.update(1, best=f"{step}")
    lines = _lines(out)
    assert lines[0].startswith("features: 0/4 batch") and lines[0].endswith("(started)")
    assert lines[1].startswith("features: 1/4 batch") and "ETA" in lines[1] and "best 0" in lines[1]
    assert lines[-1].startswith("features: 4/4 batch") and lines[-1].endswith("(done)")
    assert len(lines) == 6  # started, 4 timed, done
    assert all("\r" not in line and "\x1b" not in line for line in lines)  # no bar codes in a log


def test_timed_lines_respect_the_interval(monkeypatch):
    monkeypatch.setenv("NOLB_PROGRESS_SECONDS", "3600")
    out = _Pipe()
    with Progress(1000, desc="grid", stream=out) as bar:
        for _ in range(1000):
            bar.update(1)
    assert [line.split(":")[0] for line in _lines(out)] == ["grid", "grid"]  # started + done only


def test_announce_false_keeps_only_timed_lines(monkeypatch):
    monkeypatch.setenv("NOLB_PROGRESS_SECONDS", "0")
    out = _Pipe()
    with Progress(2, desc="epoch 1/3", stream=out, announce=False) as bar:
        bar.update(1)
        bar.update(1)
    assert [line.startswith("epoch 1/3: ") for line in _lines(out)] == [True, True]
    assert "(started)" not in out.getvalue() and "(done)" not in out.getvalue()


def test_quiet_silences_every_way(monkeypatch):
    monkeypatch.setenv("NOLB_PROGRESS_SECONDS", "0")
    out = _Pipe()
    with Progress(3, desc="a", quiet=True, stream=out) as bar:
        bar.update(3)
    progress.set_quiet(True)
    assert progress.is_quiet()
    with Progress(3, desc="b", stream=out) as bar:
        bar.update(3)
    progress.set_quiet(False)
    monkeypatch.setenv("NOLB_QUIET", "1")
    with Progress(3, desc="c", stream=out) as bar:
        bar.update(3)
    assert out.getvalue() == ""


def test_only_rank_zero_prints(monkeypatch):
    monkeypatch.setenv("NOLB_PROGRESS_SECONDS", "0")
    out = _Pipe()
    monkeypatch.setenv("RANK", "1")
    with Progress(2, desc="rank1", stream=out) as bar:
        bar.update(2)
    assert out.getvalue() == ""
    monkeypatch.setenv("RANK", "0")
    with Progress(2, desc="rank0", stream=out) as bar:
        bar.update(2)
    assert "rank0: 2/2" in out.getvalue()


def test_track_yields_everything_and_counts(monkeypatch, capsys):
    monkeypatch.setenv("NOLB_PROGRESS_SECONDS", "3600")
    assert list(track(range(5), desc="items", unit="item")) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err
    assert "items: 0/5 item" in err and "items: 5/5 item" in err and "(done)" in err


def test_cli_quiet_flag_sets_quiet(monkeypatch, tmp_path):
    from nolb.cli import main

    monkeypatch.chdir(tmp_path)
    # --quiet on a command that fails fast: the flag is applied before the command runs
    assert main(["train", "no_such_recipe", "--quiet"]) == 2
    assert progress.is_quiet()
