"""``train.precision=auto``: bf16 where the device runs it natively, fp32 elsewhere; the run records which."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from nolb.engine import precision as precision_module
from nolb.engine import train
from nolb.engine.precision import resolve_precision


@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16"])
def test_explicit_precisions_are_kept(name, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision(name, torch.device("cpu")) == name


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_cpu(native, expected, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) == expected


def test_auto_on_other_devices_is_fp32_without_bf16(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", torch.device("meta")) == "fp32"  # neither CPU nor CUDA


def test_the_probe_answers_a_bool():
    precision_module.cpu_has_native_bf16.cache_clear()
    assert isinstance(precision_module.cpu_has_native_bf16(), bool)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_run_records_and_uses_the_resolved_precision(native, expected, tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    used = []
    real = precision_module.autocast_context

    def spy(device, name):
        used.append(name)
        return real(device, name)

    for module in ("nolb.engine.loop", "nolb.engine.evaluate"):  # (nolb.engine.evaluate is also a function's name)
        monkeypatch.setattr(importlib.import_module(module), "autocast_context", spy)
    config = tiny_config("train.precision=auto", "train.epochs=1")
    result = train(config, run_dir=tmp_path / "run", quiet=True)
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["precision"] == expected
    assert used and set(used) == {expected}  # training steps, validation and test all ran in it
    assert "precision: auto" in (result.run_dir / "config.yaml").read_text()  # the config keeps what was asked
