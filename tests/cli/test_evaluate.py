"""`nolb evaluate`: the printed table, the written files, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nolb.cli import main
from nolb.metrics import recall_report

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR_LOGITS = REPO_ROOT.parent / "shared" / "data" / "cifar100lt-logits"
COUNTS = np.array([300, 120, 60, 20, 9])


def write_predictions(folder: Path, name: str = "model.npz", seed: int = 0, **overrides) -> Path:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(5), 8)
    logits = rng.normal(size=(40, 5)).astype(np.float32)
    logits[np.arange(40), labels] += np.linspace(2.5, 0.0, 5)[labels]
    arrays = {"labels": labels, "logits": logits, "train_counts": COUNTS, **overrides}
    path = folder / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def table_rows(text: str) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    return {row["Predictions"]: row for row in rows}


def test_prints_the_table_and_writes_json_csv_png(tmp_path, capsys):
    first = write_predictions(tmp_path, "first.npz", seed=0)
    second = write_predictions(tmp_path, "second.npz", seed=1)
    out = tmp_path / "out"
    code = main(["evaluate", str(first), str(second), "--bootstrap", "40", "--json", str(out / "r.json"),
                 "--csv", str(out / "r.csv"), "--plot", str(out / "r.png")])
    assert code == 0
    printed = capsys.readouterr().out
    rows = table_rows(printed)
    assert set(rows) == {"first", "second"}
    with np.load(first) as data:
        expected = recall_report(data["labels"], data["logits"], num_classes=5, train_counts=COUNTS, bootstrap=40)
    assert float(rows["first"]["HM"].split()[0]) == pytest.approx(100 * expected.hm, abs=0.006)
    assert float(rows["first"]["GM"].split()[0]) == pytest.approx(100 * expected.gm, abs=0.006)
    assert float(rows["first"]["Few (1)"]) == pytest.approx(100 * expected.few, abs=0.006)
    assert "Many: > 100 training images" in printed and "[" in rows["first"]["AM"]
    saved = json.loads((out / "r.json").read_text())
    assert saved["files"]["first"]["per_class"] == pytest.approx(expected.per_class.tolist())
    assert saved["files"]["first"]["intervals"]["hm"] == pytest.approx(list(expected.intervals["hm"]))
    with (out / "r.csv").open() as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == 10 and {row["predictions"] for row in csv_rows} == {"first", "second"}
    assert (out / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_train_counts_file_formats_and_pred_files(tmp_path, capsys):
    labels = np.repeat(np.arange(5), 4)
    pred_file = write_predictions(tmp_path, "pred.npz", logits=None, train_counts=None, pred=labels[::-1].copy(), labels=labels)
    np.save(tmp_path / "c.npy", COUNTS)
    np.savetxt(tmp_path / "c.txt", COUNTS, fmt="%d")
    (tmp_path / "c.json").write_text(json.dumps({"train_counts": COUNTS.tolist()}))
    np.savez(tmp_path / "c.npz", train_counts=COUNTS)
    expected = recall_report(labels, labels[::-1], num_classes=5, train_counts=COUNTS)
    for name in ("c.npy", "c.txt", "c.json", "c.npz"):
        assert main(["evaluate", str(pred_file), "--train-counts", str(tmp_path / name)]) == 0
        row = table_rows(capsys.readouterr().out)["pred"]
        assert float(row["Many (2)"]) == pytest.approx(100 * expected.many)
    assert main(["evaluate", str(pred_file), "--num-classes", "5"]) == 0
    assert "no training counts" in capsys.readouterr().out


def _bad_files(folder: Path) -> dict[str, tuple[list[str], str]]:
    text = folder / "notes.npz"
    text.write_text("not a zip archive")
    np.save(folder / "single.npy", np.zeros(3))
    nan_logits = np.zeros((40, 5), np.float32)
    nan_logits[3, 2] = np.nan
    return {
        "missing": ([str(folder / "absent.npz")], "no such file"),
        "not npz": ([str(text)], "not a readable .npz"),
        "npy instead of npz": ([str(folder / "single.npy")], "not an .npz archive"),
        "no labels": ([str(write_predictions(folder, "a.npz", labels=None))], "no 'labels'"),
        "no scores": ([str(write_predictions(folder, "b.npz", logits=None))], "needs 'logits'"),
        "NaN": ([str(write_predictions(folder, "c.npz", logits=nan_logits))], "NaN"),
        "length": ([str(write_predictions(folder, "d.npz", labels=np.zeros(39, np.int64)))], "40"),
        "range": ([str(write_predictions(folder, "e.npz", labels=np.full(40, 7)))], "outside [0, 5)"),
        "counts length": ([str(write_predictions(folder, "f.npz", train_counts=np.ones(4)))], "4 training counts for 5 classes"),
        "counts file": ([str(write_predictions(folder, "g.npz")), "--train-counts", str(text)], "notes.npz"),
    }


def test_bad_files_give_a_one_line_error_naming_the_file_and_write_nothing(tmp_path, capsys):
    for case, (arguments, message) in _bad_files(tmp_path).items():
        good = write_predictions(tmp_path, "good.npz")
        out = tmp_path / f"out_{case.replace(' ', '_')}.json"
        code = main(["evaluate", str(good), *arguments, "--json", str(out)])
        error = capsys.readouterr().err.strip()
        assert code == 2, case
        assert error.startswith("nolb: error: ") and "\n" not in error, case
        assert message in error, (case, error)
        assert Path(arguments[-1]).name in error or arguments[0] in error, (case, error)
        assert not out.exists(), case


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, capsys):
    model = write_predictions(tmp_path)
    target = tmp_path / "r.csv"
    target.write_text("keep me")
    assert main(["evaluate", str(model), "--csv", str(target), "--json", str(tmp_path / "r.json")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert target.read_text() == "keep me" and not (tmp_path / "r.json").exists()
    assert main(["evaluate", str(model), "--csv", str(target), "--overwrite"]) == 0
    assert target.read_text().startswith("predictions,class,")


def test_real_cifar100lt_logits(tmp_path, capsys):
    ce, la = CIFAR_LOGITS / "ce_test_lt.npz", CIFAR_LOGITS / "logitadjust_test_lt.npz"
    if not ce.is_file() or not la.is_file():
        pytest.skip(f"real CIFAR-100-LT logits not found in {CIFAR_LOGITS}")
    assert main(["evaluate", str(ce), str(la), "--json", str(tmp_path / "r.json")]) == 0
    rows = table_rows(capsys.readouterr().out)
    # the numbers in the data folder's README (acc = AM, top1 = Top-1, in percent)
    ce_row, la_row = rows["ce_test_lt"], rows["logitadjust_test_lt"]
    assert (ce_row["Top-1"], ce_row["AM"], ce_row["HM"], ce_row["GM"], ce_row["#zero"]) == ("62.80", "37.32", "0.55", "12.55", "18")
    assert (la_row["AM"], la_row["HM"], la_row["#zero"]) == ("48.59", "1.91", "5")
    assert ce_row["Many (35)"].startswith("65.2") and la_row["Few (30)"].startswith("29.8")
    saved = json.loads((tmp_path / "r.json").read_text())["files"]["ce_test_lt"]
    assert saved["zero_recall_classes"][:3] == [70, 72, 78] and saved["num_samples"] == 8151


def test_example_files_through_the_console_entry_point(tmp_path):
    examples = REPO_ROOT / "examples" / "predictions"
    files = [examples / "ce_like.npz", examples / "balanced_like.npz"]
    if not all(f.is_file() for f in files):
        pytest.skip("example prediction files absent")
    done = subprocess.run([sys.executable, "-m", "nolb", "evaluate", *map(str, files), "--plot", str(tmp_path / "p.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    assert float(rows["balanced_like"]["HM"]) > float(rows["ce_like"]["HM"])
    assert (tmp_path / "p.png").is_file()
