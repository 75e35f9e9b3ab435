"""train.threads: auto gives the cores per process; NOLB_THREADS / OMP_NUM_THREADS win."""

from __future__ import annotations

import pytest

from nolb.engine.threads import auto_threads, resolve_threads
from nolb.errors import NolbError


@pytest.mark.parametrize("cores, processes, expected", [
    (2, 1, 2),    # every core
    (16, 4, 4),   # four torchrun processes share the cores
    (2, 4, 1),    # never below 1
    (3, 2, 1),
])
def test_auto_threads(cores, processes, expected):
    assert auto_threads(processes, cores=cores) == expected


def test_environment_overrides_the_config(monkeypatch):
    monkeypatch.delenv("NOLB_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads("auto") == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("NOLB_THREADS", "2")
    assert resolve_threads(5) == (2, "NOLB_THREADS")
    monkeypatch.delenv("NOLB_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert resolve_threads("4") == (4, "train.threads")
    assert resolve_threads("auto")[1] == "train.threads=auto"


@pytest.mark.parametrize("bad", ["two", "0", "-1", "1.5"])
def test_bad_values_name_the_key(monkeypatch, bad):
    monkeypatch.delenv("NOLB_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with pytest.raises(NolbError, match="train.threads"):
        resolve_threads(bad)
    monkeypatch.setenv("NOLB_THREADS", bad)
    with pytest.raises(NolbError, match="NOLB_THREADS"):
        resolve_threads("auto")


def test_the_cli_makes_waiting_threads_sleep_unless_told_otherwise(monkeypatch, capsys):
    import os

    from nolb.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["data", "info", "places_lt"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["data", "info", "places_lt"]) == 0
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    capsys.readouterr()
