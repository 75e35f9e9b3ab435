"""`nolb compare`: one Markdown table and one per-class plot from runs, reports and prediction files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nolb.cli import main
from nolb.metrics import recall_report
from nolb.metrics.recall_curve import default_window, rolling_mean

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR_LOGITS = REPO_ROOT.parent / "shared" / "data" / "cifar100lt-logits"


def _predictions(folder: Path, name: str, num_classes: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    counts = np.maximum(1, (500 * 0.01 ** (np.arange(num_classes) / (num_classes - 1)))).astype(int)
    labels = np.repeat(np.arange(num_classes), 6)
    logits = rng.normal(size=(labels.size, num_classes)).astype(np.float32)
    logits[np.arange(labels.size), labels] += np.linspace(3.0, 0.0, num_classes)[labels]
    path = folder / name
    np.savez(path, labels=labels, logits=logits, train_counts=counts)
    return path


def test_rolling_mean_matches_a_naive_loop():
    values = np.array([1.0, np.nan, 3.0, 4.0, 10.0, 0.0, 2.0])
    window = 3
    expected = []
    for i in range(values.size):
        part = values[max(0, i - 1): i + 2]
        expected.append(np.nanmean(part))
    assert rolling_mean(values, window) == pytest.approx(expected)
    assert default_window(100) == 11 and default_window(1000) == 51 and default_window(10) == 3


def test_table_and_plot_from_prediction_files(tmp_path, capsys):
    first = _predictions(tmp_path, "ce.npz", 100, 0)
    second = _predictions(tmp_path, "bsce.npz", 100, 1)
    out = tmp_path / "cmp"
    assert main(["compare", str(first), str(second), "--out", str(out), "--plot", "recall.svg"]) == 0
    text = (out / "compare.md").read_text()
    assert "| ce |" in text and "| bsce |" in text and "Worst 3 classes" in text
    with np.load(first) as z:
        expected = recall_report(z["labels"], z["logits"], num_classes=100, train_counts=z["train_counts"])
    row = next(line for line in text.splitlines() if line.startswith("| ce |"))
    assert f"{100 * expected.hm:.2f}" in row and f"{100 * expected.am:.2f}" in row
    svg = (out / "recall.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert main(["compare", str(first), str(second), "--out", str(out), "--overwrite"]) == 0
    assert (out / "per_class_recall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["compare", str(first), "--out", str(out)]) == 2  # outputs exist, no --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_reports_rebuilt_from_counts_equal_the_originals(tmp_path):
    """A report JSON (evaluate --json) and a per-class CSV give the same numbers as the predictions."""
    pred = _predictions(tmp_path, "model.npz", 20, 3)
    assert main(["evaluate", str(pred), "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv")]) == 0
    from nolb.cli.compare import load_reports

    direct = load_reports(pred)["model"]
    from_json = load_reports(tmp_path / "r.json")["model"]
    for name in ("accuracy", "am", "gm", "hm", "lowest", "num_zero", "many", "medium", "few"):
        assert getattr(from_json, name) == pytest.approx(getattr(direct, name)), name


def test_a_run_directory_and_a_jpeg(tmp_path):
    pred = _predictions(tmp_path, "model.npz", 10, 4)
    report = recall_report(*(lambda z: (z["labels"], z["logits"]))(np.load(pred)), num_classes=10,
                           train_counts=np.load(pred)["train_counts"])
    run = tmp_path / "run"
    run.mkdir()
    report.write_csv(run / "per_class.csv")
    (run / "metrics.json").write_text(json.dumps({"test": {"hm": report.hm}}))  # stage-1 summaries: skipped
    out = tmp_path / "cmp"
    assert main(["compare", str(run), str(pred), "--out", str(out), "--plot", "p.jpg"]) == 0
    assert (out / "p.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a real JPEG
    text = (out / "compare.md").read_text()
    assert "| run |" in text and "| model |" in text


def test_refuses_different_class_counts_and_unknown_suffix(tmp_path, capsys):
    small = _predictions(tmp_path, "a.npz", 10, 0)
    large = _predictions(tmp_path, "b.npz", 20, 0)
    assert main(["compare", str(small), str(large), "--out", str(tmp_path / "o")]) == 2
    assert "different numbers of classes" in capsys.readouterr().err
    assert main(["compare", str(small), "--out", str(tmp_path / "o"), "--plot", "x.gif"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'.gif'" in err and not (tmp_path / "o").exists()


@pytest.mark.skipif(not (CIFAR_LOGITS / "ce_test_lt.npz").is_file(), reason="needs ../shared/data/cifar100lt-logits")
def test_real_cifar100_logits(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", str(CIFAR_LOGITS / "ce_test_lt.npz"), str(CIFAR_LOGITS / "balsoftmax_test_lt.npz"),
                 "--out", str(out)]) == 0
    text = (out / "compare.md").read_text()
    assert "| ce_test_lt | 8151 | 62.80 | 37.32 |" in text  # README: 37.3 % balanced accuracy, 18 zero classes
    assert "| 18 |" in text.split("| ce_test_lt |")[1].splitlines()[0] + "|"
