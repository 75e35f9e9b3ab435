"""`nolb evaluate` writes ece/classwise_ece/nll/brier (checked against torchmetrics/sklearn) and reliability plots."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from nolb.cli import main

COUNTS = np.array([300, 120, 60, 20, 9])


def softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def write(folder, name, seed=0, key="logits"):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), 40)
    logits = rng.normal(size=(200, 5)) * 2
    logits[np.arange(200), labels] += np.linspace(3.0, 0.5, 5)[labels]
    values = logits if key == "logits" else softmax(logits) if key == "probs" else logits
    np.savez(folder / name, labels=labels, train_counts=COUNTS, **{key: values})
    return folder / name, labels, logits


def test_json_calibration_matches_independent_implementations(tmp_path, capsys):
    first, labels, logits = write(tmp_path, "a.npz")
    second, labels2, logits2 = write(tmp_path, "b.npz", seed=1, key="probs")
    out = tmp_path / "out.json"
    assert main(["evaluate", str(first), str(second), "--json", str(out), "--bootstrap", "50",
                 "--calibration-plot", str(tmp_path / "rel.png")]) == 0
    printed = capsys.readouterr().out
    assert "| ECE | cw-ECE | NLL | Brier |" in printed
    data = json.loads(out.read_text())["files"]
    for row, y, z in ((data["a"], labels, logits), (data["b"], labels2, logits2)):
        probs = softmax(z)
        ece = multiclass_calibration_error(torch.from_numpy(z), torch.from_numpy(y), num_classes=5, n_bins=15, norm="l1")
        assert row["ece"] == pytest.approx(ece.item(), abs=1e-6)
        assert row["nll"] == pytest.approx(log_loss(y, probs, labels=range(5)), abs=1e-6)
        brier = np.mean([sum((probs[i, k] - (y[i] == k)) ** 2 for k in range(5)) for i in range(len(y))])
        assert row["brier"] == pytest.approx(brier, abs=1e-6)
        assert 0 <= row["classwise_ece"] <= row["ece"] + 1  # present and a fraction
        assert {"ece", "nll", "brier", "classwise_ece"} <= set(row["intervals"])
    assert data["b"]["calibration"]["source"] == "probs"
    assert (tmp_path / "rel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scores_without_a_kind_and_labels_only_get_no_calibration(tmp_path):
    scores, *_ = write(tmp_path, "s.npz", key="scores")
    np.savez(tmp_path / "p.npz", labels=np.arange(5), pred=np.arange(5), train_counts=COUNTS)
    out = tmp_path / "out.json"
    assert main(["evaluate", str(scores), str(tmp_path / "p.npz"), "--json", str(out)]) == 0
    for row in json.loads(out.read_text())["files"].values():
        assert "ece" not in row


@pytest.mark.parametrize("name,message", [("rel.bmp", "cannot write a plot"), ("rel", "cannot write a plot")])
def test_calibration_plot_needs_a_known_suffix(tmp_path, capsys, name, message):
    first, *_ = write(tmp_path, "a.npz")
    assert main(["evaluate", str(first), "--calibration-plot", str(tmp_path / name)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / name).exists()


def test_calibration_plot_svg_and_pdf_and_no_overwrite(tmp_path, capsys):
    first, *_ = write(tmp_path, "a.npz")
    assert main(["evaluate", str(first), "--calibration-plot", str(tmp_path / "r.svg")]) == 0
    assert b"<svg" in (tmp_path / "r.svg").read_bytes()[:500]
    assert main(["evaluate", str(first), "--calibration-plot", str(tmp_path / "r.pdf")]) == 0
    assert (tmp_path / "r.pdf").read_bytes()[:4] == b"%PDF"
    before = (tmp_path / "r.svg").read_bytes()
    assert main(["evaluate", str(first), "--calibration-plot", str(tmp_path / "r.svg")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "r.svg").read_bytes() == before


def test_calibration_plot_without_scores_is_an_error(tmp_path, capsys):
    np.savez(tmp_path / "p.npz", labels=np.arange(5), pred=np.arange(5), train_counts=COUNTS)
    assert main(["evaluate", str(tmp_path / "p.npz"), "--calibration-plot", str(tmp_path / "r.png")]) == 2
    assert "calibration" in capsys.readouterr().err
