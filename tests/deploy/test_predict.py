"""`nolb predict` on a run: same predictions as the run's report; bad inputs reported, not fatal."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from nolb.cli import main


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _test_tensors():
    """The 500 Digits-LT test images as nolb's eval loader gives them (in memory, no PNG round trip)."""
    from nolb.data import build_data, build_loader

    data = build_data("digits_lt", imbalance_ratio=20)
    loader = build_loader(data.test, batch_size=500, train=False, preset=data.preset, mean=data.mean, std=data.std)
    return next(iter(loader))[0]


def _predict_test_split(run, digits_test_pngs, tmp_path):
    root, paths, labels = digits_test_pngs
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), str(root), "--csv", str(out), "--batch-size", "64"]) == 0
    rows = _rows(out)
    assert len(rows) == len(paths) == 500
    by_path = {row["path"]: row for row in rows}
    return [by_path[str(p)] for p in paths], np.array(labels)


def test_predict_on_the_test_split_equals_the_report(digits_run, digits_test_pngs, tmp_path, capsys,
                                                     final_reference, final_report_row):
    """Whatever validation chose (base, a head or the ensemble): predict == that candidate's report row."""
    rows, truth = _predict_test_split(digits_run, digits_test_pngs, tmp_path)
    predicted = np.array([int(row["index_1"]) for row in rows])
    report = final_report_row(digits_run)
    correct = [int(((predicted == truth) & (truth == c)).sum()) for c in range(10)]
    assert correct == report["correct"]  # the report scores float32 validation/test features, as predict computes
    # Per image, against the declared candidate rebuilt from the run's own files on the in-memory test tensors.
    expected = final_reference(digits_run, _test_tensors())
    np.testing.assert_array_equal(predicted, expected.argmax(1).numpy())
    probs = np.array([float(row["prob_1"]) for row in rows])
    np.testing.assert_allclose(probs, expected.max(1).values.numpy(), atol=2e-6)
    assert all(float(r["prob_1"]) >= float(r["prob_2"]) >= float(r["prob_5"]) for r in rows)
    assert "predicted 500 images" in capsys.readouterr().err


def test_predict_with_the_ensemble_gives_both_heads(ensemble_run, digits_test_pngs, tmp_path, final_reference,
                                                    final_report_row):
    """The two-head file: its top-1 is the ensemble report row, and both heads' answers are in the CSV."""
    rows, truth = _predict_test_split(ensemble_run, digits_test_pngs, tmp_path)
    predicted = np.array([int(row["index_1"]) for row in rows])
    report = final_report_row(ensemble_run)
    assert [int(((predicted == truth) & (truth == c)).sum()) for c in range(10)] == report["correct"]
    np.testing.assert_array_equal(predicted, final_reference(ensemble_run, _test_tensors()).argmax(1).numpy())
    assert {"original_class", "original_prob", "new_class", "new_prob"} <= set(rows[0])
    from nolb.deploy import load_model

    module, _ = load_model(ensemble_run)
    with torch.no_grad():
        _, p_original, p_new = module.all_probabilities(_test_tensors())
    assert [int(r["original_class"]) for r in rows] == p_original.argmax(1).tolist()
    assert [int(r["new_class"]) for r in rows] == p_new.argmax(1).tolist()


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


def test_predict_to_stdout_with_a_model_file(ensemble_run, digits_test_pngs, capsys):
    _, paths, _ = digits_test_pngs
    model_file = ensemble_run / "model" / "model.safetensors"
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
