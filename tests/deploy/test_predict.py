"""`nolb predict` on a run: same predictions as the run's report; bad inputs reported, not fatal."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from nolb.cli import main


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_on_the_test_split_equals_the_report(digits_run, digits_test_pngs, tmp_path, capsys):
    root, paths, labels = digits_test_pngs
    out = tmp_path / "p.csv"
    assert main(["predict", str(digits_run), str(root), "--csv", str(out), "--batch-size", "64"]) == 0
    rows = _rows(out)
    assert len(rows) == len(paths) == 500
    by_path = {row["path"]: row for row in rows}
    predicted = np.array([int(by_path[str(p)]["index_1"]) for p in paths])
    truth = np.array(labels)
    report = json.loads((digits_run / "report" / "metrics.json").read_text())["ensemble"]
    correct = [int(((predicted == truth) & (truth == c)).sum()) for c in range(10)]
    assert correct == report["correct"]  # equal on this run (no near-tie flipped by the report's fp16 features)
    # Per image, against the run's own saved ensemble on the in-memory test tensors (nolb's eval loader).
    from nolb.data import build_data, build_loader
    from nolb.retrain.ensemble_io import load_ensemble

    ensemble = load_ensemble(digits_run / "ensemble" / "ensemble.safetensors")
    data = build_data("digits_lt", imbalance_ratio=20)
    loader = build_loader(data.test, batch_size=500, train=False, preset=data.preset, mean=data.mean, std=data.std)
    with torch.no_grad():
        log_p = torch.cat([ensemble(x) for x, _ in loader])
    np.testing.assert_array_equal(predicted, log_p.argmax(1).numpy())
    probs = np.array([float(by_path[str(p)]["prob_1"]) for p in paths])
    np.testing.assert_allclose(probs, log_p.exp().max(1).values.numpy(), atol=2e-6)
    # The ensemble's two heads are in the row, and every row's top-5 is sorted.
    assert {"original_class", "original_prob", "new_class", "new_prob"} <= set(rows[0])
    assert all(float(r["prob_1"]) >= float(r["prob_2"]) >= float(r["prob_5"]) for r in rows)
    assert "predicted 500 images" in capsys.readouterr().err


def test_unreadable_files_are_named_skipped_and_counted(digits_run, digits_test_pngs, tmp_path, capsys):
    _, paths, _ = digits_test_pngs
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.png").write_bytes(paths[0].read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "notes.md").write_text("hello")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images\n{paths[1]}\n\n{paths[2]}\n")
    out = tmp_path / "p.csv"
    assert main(["predict", str(digits_run), str(folder), str(listing), "--csv", str(out), "--top-k", "2"]) == 0
    err = capsys.readouterr().err
    assert "broken.png" in err and "notes.md" in err
    assert "predicted 3 images" in err and "skipped 2 unreadable files" in err
    rows = _rows(out)
    assert [r["path"] for r in rows] == [str(folder / "a.png"), str(paths[1]), str(paths[2])]
    assert "class_3" not in rows[0] and rows[0]["class_2"] != ""


def test_empty_input_is_a_one_line_error(digits_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(digits_run), str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nolb: error: no input images") and "\n" not in err
    assert main(["predict", str(digits_run), str(tmp_path / "missing.png")]) == 2
    assert "missing.png" in capsys.readouterr().err
    (tmp_path / "only_bad.png").write_text("x")
    assert main(["predict", str(digits_run), str(tmp_path / "only_bad.png")]) == 2
    assert "none of the 1 input files" in capsys.readouterr().err


def test_predict_to_stdout_with_a_model_file(digits_run, digits_test_pngs, capsys):
    _, paths, _ = digits_test_pngs
    model_file = digits_run / "model" / "model.safetensors"
    assert main(["predict", str(model_file), str(paths[0]), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("path,class_1,index_1,prob_1,original_class")
    assert len(lines) == 2 and lines[1].startswith(str(paths[0]))


def test_images_of_another_size_and_colour_are_prepared(digits_run, tmp_path):
    """An RGB 32x32 image is converted to grey and resized to the model's 8x8 input."""
    from PIL import Image

    from nolb.deploy.predict import predict

    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "big.png")
    result = predict(digits_run, [tmp_path / "big.png"], top_k=3)
    assert result.probabilities.shape == (1, 10)
    assert float(result.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
