"""`nolb export`: ONNX and torch.export files that match the native model and run without nolb."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from nolb.cli import main
from nolb.errors import NolbError

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

FRESH = textwrap.dedent("""
    import sys
    import numpy as np
    fmt, model, images, out = sys.argv[1:5]
    x = np.load(images)
    if fmt == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        outputs = session.run(None, {"image": x})
    else:
        import torch
        with torch.no_grad():
            outputs = [o.numpy() for o in torch.export.load(model).module()(torch.from_numpy(x))]
    assert not any(name == "nolb" or name.startswith("nolb.") for name in sys.modules), "nolb was imported"
    np.savez(out, *outputs)
""")


def run_fresh(tmp_path, fmt, model_path, images: torch.Tensor) -> list[np.ndarray]:
    """Outputs of the exported file in a new isolated interpreter (-I: no PYTHONPATH, so no nolb)."""
    script, inputs, out = tmp_path / "fresh.py", tmp_path / "x.npy", tmp_path / "out.npz"
    script.write_text(FRESH)
    np.save(inputs, images.numpy())
    subprocess.run([sys.executable, "-I", str(script), fmt, str(model_path), str(inputs), str(out)], check=True,
                   cwd=tmp_path, timeout=300)
    with np.load(out) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def digits_test_batch():
    from nolb.data import build_data, build_loader

    data = build_data("digits_lt", imbalance_ratio=20)
    loader = build_loader(data.test, batch_size=500, train=False, preset=data.preset, mean=data.mean, std=data.std)
    return next(iter(loader))[0]


@pytest.mark.parametrize("fmt,suffix", [("onnx", ".onnx"), ("torch-export", ".pt2")])
def test_export_of_the_run_ensemble_matches_and_runs_without_nolb(ensemble_run, tmp_path, fmt, suffix, capsys):
    import onnx

    from nolb.deploy import load_model

    out = tmp_path / f"model{suffix}"
    assert main(["export", str(ensemble_run), "--format", fmt, "--out", str(out)]) == 0
    assert "max abs difference" in capsys.readouterr().out
    if fmt == "onnx":
        onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    sidecar = json.loads((tmp_path / f"model{suffix}.json").read_text())
    assert sidecar["outputs"] == ["probabilities", "original_probabilities", "new_probabilities"]
    assert sidecar["preprocessing"]["input_size"] == 8 and sidecar["class_names"] == [str(c) for c in range(10)]
    module, _ = load_model(ensemble_run)
    x = digits_test_batch()  # 500 real images: another batch size than the export's example
    with torch.no_grad():
        native = [t.numpy() for t in module.all_probabilities(x)]
    exported = run_fresh(tmp_path, fmt, out, x)
    assert len(exported) == 3
    for a, b in zip(native, exported):
        assert b.shape == a.shape and np.abs(a - b).max() <= 1e-5
    assert main(["export", str(ensemble_run), "--format", fmt, "--out", str(out)]) == 2  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_export_of_the_declared_final_model(digits_run, tmp_path, final_reference):
    """A run dir exports the candidate final_model.json names (one output unless it is the ensemble)."""
    out = tmp_path / "final.pt2"
    assert main(["export", str(digits_run), "--format", "torch-export", "--out", str(out)]) == 0
    kind = json.loads((digits_run / "final_model.json").read_text())["kind"]
    outputs = json.loads((tmp_path / "final.pt2.json").read_text())["outputs"]
    assert len(outputs) == (3 if kind == "ensemble" else 1) and outputs[0] == "probabilities"
    x = digits_test_batch()
    exported = run_fresh(tmp_path, "torch-export", out, x)
    assert np.abs(exported[0] - final_reference(digits_run, x).numpy()).max() <= 1e-5


@pytest.mark.slow
def test_cifar10_log_space_ensemble_exports_within_1e5(cifar10_root, tmp_path):
    """A ResNet-20 ensemble with unequal temperatures, log-space average, on real CIFAR-10 images."""
    from nolb.data import build_data, build_loader
    from nolb.deploy import ModelDescription, Preprocessing, load_model, save_model_file
    from nolb.deploy.export import export_model
    from nolb.models import build_model

    data = build_data("cifar10_lt", root=str(cifar10_root), imbalance_ratio=100)
    torch.manual_seed(0)
    model = build_model("resnet20", 10).eval()
    new_head = torch.nn.Linear(64, 10)
    arch = {"model": "resnet20", "num_classes": 10, "in_channels": 3, "head": "linear", "options": {},
            "classifier": "classifier"}
    heads = {"original": {"temperature": 1.5}, "new": {"temperature": 0.75, "in_features": 64, "out_features": 10},
             "space": "log"}
    description = ModelDescription("ensemble", "ensemble", arch, Preprocessing.from_data(data), data.class_names,
                                   data.class_counts.tolist(), heads)
    path = save_model_file(tmp_path / "cifar.safetensors", model, description, new_head)
    module, _ = load_model(path)
    loader = build_loader(data.test, batch_size=64, train=False, preset=data.preset, mean=data.mean, std=data.std)
    x = next(iter(loader))[0]
    with torch.no_grad():
        native = [t.numpy() for t in module.all_probabilities(x)]
        z1, z2 = model(x), new_head(model.forward_features(x))
    expected = torch.softmax((torch.log_softmax(z1 / 1.5, 1) + torch.log_softmax(z2 / 0.75, 1)) / 2, 1)
    np.testing.assert_allclose(native[0], expected.numpy(), atol=1e-6)
    result = export_model(path, "onnx", tmp_path / "c.onnx", check_batch=x)  # torch-export: the digits test
    assert result.max_abs_diff <= 1e-5
    for a, b in zip(native, run_fresh(tmp_path, "onnx", tmp_path / "c.onnx", x)):
        assert np.abs(a - b).max() <= 1e-5


def test_missing_extra_is_a_one_line_error_naming_it(digits_run, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    monkeypatch.delitem(sys.modules, "onnx", raising=False)
    from nolb.deploy.export import export_model

    with pytest.raises(NolbError, match=r"nolb\[export\]"):
        export_model(digits_run, "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(NolbError, match="unknown format"):
        export_model(digits_run, "tflite", tmp_path / "m.tflite")
