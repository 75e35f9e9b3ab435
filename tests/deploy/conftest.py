"""Fixtures of the deploy tests: one short `nolb run` on Digits-LT and its test split as PNG files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """`nolb run digits_lt train.epochs=3 --out R` (stages 1-3; R/model/ packaged by the command)."""
    from nolb.cli import main

    out = tmp_path_factory.mktemp("deploy") / "run"
    assert main(["run", "digits_lt", "train.epochs=3", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def digits_test_pngs(tmp_path_factory) -> tuple[Path, list[Path], list[int]]:
    """The 500 Digits-LT test images written as 8x8 grey PNGs (exact uint8 pixels), nested folders."""
    from PIL import Image

    from nolb.data import build_data

    data = build_data("digits_lt", imbalance_ratio=20)
    root = tmp_path_factory.mktemp("pngs")
    paths, labels = [], []
    for i in range(len(data.test)):
        image, label = data.test[i]
        path = root / f"class{label}" / f"{i:04d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(path)
        paths.append(path)
        labels.append(int(label))
    return root, paths, labels


@pytest.fixture(scope="session")
def prepared_batch():
    """A function: PNG paths -> the batch `nolb predict` builds from them."""
    return _prepared_batch


@pytest.fixture(scope="session")
def predictions_as_reported():
    """A function: (module, batch) -> top-1 computed as the stage-2/3 reports compute it."""
    return _predictions_as_reported


def _prepared_batch(paths, description):
    """The PNG files prepared as `nolb predict` prepares them, as one (N, C, H, W) batch."""
    import torch

    from nolb.deploy.images import build_preprocess, prepare_image

    transform = build_preprocess(description.preprocessing)
    return torch.stack([prepare_image(p, description.preprocessing, transform) for p in paths])


def _predictions_as_reported(module, x):
    """Top-1 of the deployed module as the stage-2/3 reports compute it: the test split's
    features are cached in float32 (``nolb.retrain.feature_source.feature_dtype``), so it is the
    module's own float32 top-1."""
    import torch

    with torch.no_grad():
        return module(x).argmax(1)


@pytest.fixture(scope="session")
def ensemble_run(digits_run, tmp_path_factory) -> Path:
    """A copy of ``digits_run`` whose declared final model is its ensemble (whatever validation
    chose), packaged, for the tests of the two-head file, its export and its CSV columns."""
    import json
    import shutil

    run = tmp_path_factory.mktemp("deploy-ensemble") / "run"
    shutil.copytree(digits_run, run)
    (run / "final_model.json").write_text(json.dumps(
        {"candidate": "ensemble", "kind": "ensemble", "files": {"ensemble": "ensemble/ensemble.safetensors"}}))
    from nolb.deploy import package_run

    package_run(run)
    return run


@pytest.fixture(scope="session")
def final_reference():
    """A function: (run, batch) -> probabilities of the run's declared final model, rebuilt
    from the run's own files (stage-1 checkpoint, head file, ensemble file) without nolb.deploy."""
    return _final_reference


@pytest.fixture(scope="session")
def final_report_row():
    """A function: (run, report folder) -> the test-report row of the candidate final_model.json names."""
    return _final_report_row


def _final_report_row(run, report_dir="report"):
    import json

    final = json.loads((run / "final_model.json").read_text())
    return json.loads((run / report_dir / "metrics.json").read_text())[REPORT_ROWS[final["candidate"]]]


# the row labels of the reports (nolb.retrain.pipeline.ROW_NAMES; the paper head's is its method's, GML here)
REPORT_ROWS = {"base": "base", "nolb": "nolb (val-tuned GML)", "paper": "GML (paper)", "ensemble": "ensemble"}


def _final_reference(run, x):
    import json

    import torch

    from nolb.engine import load_trained
    from nolb.io import load_safetensors
    from nolb.retrain.ensemble_io import load_ensemble

    final = json.loads((run / "final_model.json").read_text())
    base, _, _ = load_trained(run)
    base.eval()
    with torch.no_grad():
        if final["kind"] == "ensemble":
            return load_ensemble(run / final["files"]["ensemble"])(x).exp()
        if final["kind"] == "head":
            tensors = load_safetensors(run / final["files"]["head"])[0]
            return torch.softmax(base.forward_features(x) @ tensors["weight"].T + tensors["bias"], 1)
        return torch.softmax(base(x), 1)
