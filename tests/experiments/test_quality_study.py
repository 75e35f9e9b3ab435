"""experiments/quality_study.py: verdicts decided by intervals; the doc rewritten only between its markers."""

import importlib.util
import json

import pytest


@pytest.fixture
def study(repo_root, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("quality_study", repo_root / "experiments" / "quality_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(module, "REPO", tmp_path)
    return module


def _row(hm, lo, hi):
    return {"accuracy": hm, "am": hm, "hm": hm, "gm": hm, "lowest": hm, "num_zero": 0, "many": hm, "medium": None,
            "few": None, "intervals": {k: [lo, hi] for k in ("accuracy", "am", "hm", "gm", "lowest")}}


def test_verdict_needs_separated_intervals(study):
    a, b = _row(0.7, 0.68, 0.72), _row(0.6, 0.58, 0.62)
    assert study.verdict(a, b, "hm") == "ahead" and study.verdict(b, a, "hm") == "behind"
    assert study.verdict(a, _row(0.69, 0.66, 0.71), "hm") == "level"  # overlapping intervals: a tie


def test_report_rewrites_only_between_markers(study, tmp_path):
    record = {"dataset": "fashion_mnist_lt", "imbalance_ratio": 100, "loss": "ce", "seed": 0, "commit": "abcdef1234",
              "dirty": False, "config": {"train": {"epochs": 6}}, "seconds": 60.0, "threads": 1,
              "command": ["python", "-m", "nolb", "run"],
              "splits": {"sources": {"train": "T", "val": "V", "test": "X"}},
              "rows": {"base": _row(0.5, 0.45, 0.55), "nolb (val-tuned GML)": _row(0.7, 0.68, 0.72),
                       "cRT": _row(0.6, 0.58, 0.62), "LWS": _row(0.65, 0.62, 0.67)}}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text(json.dumps(record))
    doc = tmp_path / "QUALITY.md"
    doc.write_text(f"# Title\n\nintro\n{study.BEGIN}\nold table\n{study.END}\n\n## Many classes\nkept\n")
    study.write_report(doc)
    text = doc.read_text()
    assert text.startswith("# Title\n\nintro\n") and text.endswith(f"{study.END}\n\n## Many classes\nkept\n")
    assert "old table" not in text and "| nolb (val-tuned GML) | 70.0 [68.0, 72.0]" in text
    # the best baseline is LWS; its interval [62, 67] ends below nolb's [68, 72]: ahead on every metric, 1 seed
    assert "| fashion_mnist_lt | 100 | ce | nolb vs best baseline | 1 / 0 / 0 | 1 / 0 / 0 | 1 / 0 / 0 |" in text
    assert "| nolb vs base | 1 / 0 / 0 |" in text


def _final(ensemble_hm, nolb_hm=0.80, ensemble_acc=0.85):
    val = {"nolb": {"hm": nolb_hm, "am": 0.84, "accuracy": 0.85}, "ensemble": {"hm": ensemble_hm, "am": 0.85,
           "accuracy": ensemble_acc}, "paper": {"hm": 0.70, "am": 0.75, "accuracy": 0.80},
           "base": {"hm": 0.40, "am": 0.76, "accuracy": 0.86}}
    return {"candidate": "ensemble", "rule": "val accuracy >= 0.8500, then HM, then AM on validation", "val": val}


def test_final_choice_applies_the_ensemble_margin(study):
    assert study.final_choice(_final(0.81), margin=0.0) == "ensemble"  # the plain maximum: what old runs wrote
    assert study.final_choice(_final(0.81), margin=0.05) == "nolb"  # a 1-point lead is not enough
    assert study.final_choice(_final(0.90), margin=0.05) == "ensemble"  # a 10-point lead is
    # the accuracy guard comes first: an ensemble below the floor loses whatever its HM
    assert study.final_choice(_final(0.95, ensemble_acc=0.84), margin=0.0) == "nolb"
    assert study.final_choice({"candidate": "nolb"}) == "nolb"  # no recorded scores: what the run wrote


def test_summary_has_the_final_model_row(study):
    rows = {"base": _row(0.5, 0.45, 0.55), "GML (paper)": _row(0.55, 0.5, 0.6), "nolb (val-tuned GML)": _row(0.7, 0.68, 0.72),
            "ensemble": _row(0.71, 0.69, 0.73), "cRT": _row(0.6, 0.58, 0.62)}
    records = [{"dataset": "cifar10_lt", "imbalance_ratio": 10, "loss": "bsce", "seed": seed, "rows": rows,
                "final_model": _final(0.81)} for seed in (0, 1)]
    text = "\n".join(study.summary_lines(records))
    assert "| cifar10_lt | 10 | bsce | 0,1 | base | 50.0 [50.0, 50.0]" in text
    assert "| final model (chosen on val): nolb x2 | 70.0 [70.0, 70.0]" in text
