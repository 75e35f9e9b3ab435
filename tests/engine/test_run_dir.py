"""The run directory: refusal to clobber, atomic checkpoints whose JSON state names verified tensors."""

from __future__ import annotations

import json

import pytest
import torch

from nolb.engine.run_dir import RunDir
from nolb.engine.training_state import (
    merge_optimizer_state, rng_states, set_rng_states, split_optimizer_state,
)
from nolb.errors import NolbError
from nolb.io import save_safetensors


def test_existing_directory_needs_resume_or_overwrite(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_run_info({"seed": 0})
    with pytest.raises(NolbError, match="exists; pass resume=True"):
        RunDir(tmp_path / "run")
    with pytest.raises(NolbError, match="nothing to resume"):
        RunDir(tmp_path / "run", resume=True)
    replacement = RunDir(tmp_path / "run", overwrite=True)
    assert (tmp_path / "run" / "run.json").exists()  # the old run stays until the new one writes
    replacement.write_log([])
    assert not (tmp_path / "run" / "run.json").exists()
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(NolbError, match="not a nolb run directory"):
        RunDir(tmp_path / "precious", overwrite=True)
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_checkpoint_round_trip_and_interrupted_save_detected(tmp_path):
    run = RunDir(tmp_path / "run")
    weights = {"w": torch.arange(6.0).view(2, 3)}
    optim = {"state.0.momentum_buffer": torch.ones(3)}
    run.save_checkpoint("last", weights, {"epoch": 3}, optimizer_tensors=optim)
    state, w, o = run.load_checkpoint("last")
    assert state["epoch"] == 3 and torch.equal(w["w"], weights["w"]) and torch.equal(o["state.0.momentum_buffer"], optim["state.0.momentum_buffer"])
    names = json.loads((run.checkpoint_dir / "last.json").read_text())["files"]
    assert names["weights"]["name"] == "last.safetensors"
    # A kill after the new weights but before the new JSON: the mismatch is reported, not silently used.
    save_safetensors(run.checkpoint_dir / "last.safetensors", {"w": torch.zeros(2, 3)})
    with pytest.raises(NolbError, match="does not match"):
        run.load_checkpoint("last")
    (run.checkpoint_dir / "last.safetensors").unlink()
    with pytest.raises(NolbError, match="missing"):
        run.load_checkpoint("last")


def test_log_is_rewritten_atomically(tmp_path):
    run = RunDir(tmp_path / "run")
    run.append_log({"epoch": 1, "loss": 2.0})
    run.append_log({"epoch": 2, "loss": 1.5})
    assert run.read_log() == [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2


def test_non_writer_rank_creates_nothing(tmp_path):
    run = RunDir(tmp_path / "run", writer=False)
    run.write_run_info({"seed": 0})
    run.save_checkpoint("last", {"w": torch.ones(1)}, {"epoch": 1})
    assert not (tmp_path / "run").exists()


def test_optimizer_state_split_and_merge_round_trip():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    json_part, tensors = split_optimizer_state(optimizer)
    json.dumps(json_part)  # JSON-safe
    fresh = torch.optim.SGD(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    fresh.load_state_dict(merge_optimizer_state(json.loads(json.dumps(json_part)), tensors))
    original = optimizer.state_dict()
    restored = fresh.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for index, entry in original["state"].items():
        assert torch.equal(restored["state"][index]["momentum_buffer"], entry["momentum_buffer"])


def test_rng_states_round_trip_through_json():
    import random

    import numpy as np

    saved = json.loads(json.dumps(rng_states()))
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_states(saved)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]
