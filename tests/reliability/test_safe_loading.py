"""Safe loading: a crafted malicious pickle is refused without running its payload, and
truncated checkpoints give a one-line NolbError.

The payload is real: the test first proves that an unsafe ``torch.load`` (weights_only=False)
does run it and creates the marker file, then that every nolb entry point refuses it.
"""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from nolb.errors import NolbError
from nolb.io import load_safetensors, safe_torch_load, save_safetensors

from .conftest import assert_one_line_error


class _Payload:
    """Unpickling this calls os.system('touch MARKER')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _evil_state(marker):
    # Looks like a wrapped state dict of tensors, with the payload hidden inside.
    return {"state_dict": {"conv1.weight": torch.zeros(2, 2)}, "best_prec1": _Payload(marker)}


def _write_evil(path, marker, fmt):
    if fmt == "zip":
        torch.save(_evil_state(marker), path)
    elif fmt == "legacy":
        torch.save(_evil_state(marker), path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle stream (what pickle.dump writes) under a .th name
        with open(path, "wb") as f:
            pickle.dump(_evil_state(marker), f, protocol=2)


FORMATS = ("zip", "legacy", "raw")


@pytest.mark.parametrize("fmt", FORMATS)
def test_payload_is_real(tmp_path, fmt):
    """Sanity: the crafted files do run their payload when loaded unsafely."""
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil.{fmt}.pth"
    _write_evil(path, marker, fmt)
    if fmt == "raw":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("suffix", (".pth", ".th"))
def test_safe_torch_load_refuses_payload(tmp_path, fmt, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    _write_evil(path, marker, fmt)
    with pytest.raises(NolbError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "refused" in message
    # torch's own refusal advises retrying with weights_only=False: nolb must not pass that on
    assert "set to `False`" not in message and "weights_only=False" not in message, message
    assert not marker.exists(), "the payload ran"


@pytest.mark.parametrize("fmt", FORMATS)
def test_build_model_refuses_payload(tmp_path, fmt):
    from nolb.models import build_model

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    _write_evil(path, marker, fmt)
    with pytest.raises(NolbError):
        build_model("small_cnn", 10, in_channels=1, weights=str(path))
    assert not marker.exists()


def test_train_cli_refuses_payload(tmp_path, run_cli):
    """`nolb train ... model.weights=evil.pth` stops with one line, payload not run, nothing written."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    _write_evil(path, marker, "zip")
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "digits_lt", f"model.weights={path}", "train.epochs=1", "--out", out, "--quiet"])
    assert_one_line_error(rc, err, str(path))
    assert not marker.exists()


@pytest.mark.parametrize("argv", [
    ["retrain", "{evil}", "digits_lt", "model.name=small_cnn", "--out", "{out}"],
    ["retrain", "{evil}", "digits_lt", "model.name=resnet32", "model.options={{}}", "--out", "{out}"],
], ids=["retrain-small-cnn", "retrain-resnet32"])
def test_retrain_cli_refuses_payload(tmp_path, run_cli, argv):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    _write_evil(path, marker, "zip")
    out = tmp_path / "out"
    rc, _, err = run_cli([a.format(evil=path, out=out) for a in argv])
    assert_one_line_error(rc, err, str(path))
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("name", ["head.safetensors", "head.pth"])
def test_ensemble_cli_refuses_pickled_head(tmp_path, run_cli, name):
    """`nolb ensemble --head` reads safetensors only: a pickle under either name is refused
    before the run directory is even needed."""
    marker = tmp_path / "pwned"
    head = tmp_path / name
    _write_evil(head, marker, "zip")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    rc, _, err = run_cli(["ensemble", run, f"ensemble.head={head}", "--out", tmp_path / "out"])
    assert_one_line_error(rc, err)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_evaluate_refuses_pickled_npz(tmp_path, run_cli):
    """`nolb evaluate` reads .npz with allow_pickle=False: an object array is refused."""
    import numpy as np

    marker = tmp_path / "pwned"
    path = tmp_path / "pred.npz"
    np.savez(path, labels=np.arange(3), logits=np.array([_Payload(marker)] * 3, dtype=object))
    rc, _, err = run_cli(["evaluate", path])
    assert_one_line_error(rc, err, str(path))
    assert not marker.exists()


def _truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("keep", (0.0, 0.01, 0.5, 0.99))
def test_truncated_safetensors(tmp_path, keep):
    path = tmp_path / "w.safetensors"
    save_safetensors(path, {"a": torch.randn(64, 64), "b": torch.arange(10)}, metadata={"epoch": "1"})
    _truncate(path, keep)
    with pytest.raises(NolbError) as info:
        load_safetensors(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("legacy", (False, True))
@pytest.mark.parametrize("keep", (0.0, 0.01, 0.5, 0.99))
def test_truncated_pth(tmp_path, keep, legacy):
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {"a": torch.randn(64, 64)}}, path, _use_new_zipfile_serialization=not legacy)
    _truncate(path, keep)
    with pytest.raises(NolbError) as info:
        safe_torch_load(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "truncated" in message or "unreadable" in message, message


def test_truncated_real_weights_via_cli(tmp_path, run_cli):
    """The real third-party ResNet-20 file, cut in half, given to `nolb train`: one line, no traceback."""
    from .conftest import SHARED_DATA

    source = SHARED_DATA / "weights" / "resnet20-12fca82f.th"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    path = tmp_path / "resnet20.th"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    rc, _, err = run_cli(["train", "digits_lt", f"model.weights={path}", "train.epochs=1",
                          "--out", tmp_path / "run", "--quiet"])
    assert_one_line_error(rc, err, str(path))


@pytest.mark.parametrize("batch", ["data_batch_1", "batches.meta"])
def test_cifar_reader_refuses_payload(tmp_path, run_cli, batch):
    """The CIFAR reader unpickles the official batches with an array-only unpickler: a
    tampered batch file is refused (one line naming it) without running its payload."""
    import numpy as np

    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows = np.zeros((20, 3072), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": [i % 10 for i in range(20)]}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f, protocol=2)
    with open(folder / batch, "wb") as f:
        pickle.dump({"data": rows, "labels": [0] * 20, "label_names": ["x"] * 10, "extra": _Payload(marker)}, f, protocol=2)
    rc, _, err = run_cli(["data", "info", "cifar10_lt", "--root", tmp_path / "cifar"])
    assert_one_line_error(rc, err, batch)
    assert not marker.exists()
