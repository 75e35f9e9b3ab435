"""Errors speak the caller's language: a battery of bad command lines, each answered by one
``nolb: error:`` line in flag / key=value spellings, with the close match for a misspelt name;
and the same errors from Python in keyword spellings."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from nolb.cli import main
from nolb.errors import NolbError, cli_text, did_you_mean

# Python-only spellings that must never reach a command-line user.
PYTHON_SPELLINGS = re.compile(r"=True|=False|=None|exclude_empty|overwrite=|resume=|\*\*|Traceback")


def _npz(folder: Path, name: str, *, empty_class: bool = False) -> Path:
    labels = np.array([0, 0, 1, 1, 2, 2] if not empty_class else [0, 0, 1, 1, 1, 1])
    logits = np.eye(3, dtype=np.float32)[labels] + 0.1
    path = folder / name
    np.savez(path, labels=labels, logits=logits, train_counts=np.array([50, 10, 5]))
    return path


def _battery(tmp: Path) -> dict[str, tuple[list[str], str | None]]:
    """name -> (argv, a fragment the message must contain)."""
    good = _npz(tmp, "good.npz")
    empty = _npz(tmp, "empty.npz", empty_class=True)
    run = tmp / "existing-run"
    run.mkdir()
    (run / ".nolb-run").write_text("")  # a run directory nolb made (its marker)
    (run / "config.yaml").write_text("x: 1\n")
    demo = tmp / "existing-demo"
    demo.mkdir()
    (demo / "config.yaml").write_text("x: 1\n")
    return {
        "dataset misspelt": (["data", "info", "cifar10-lt"], "did you mean 'cifar10_lt'?"),
        "dataset typo": (["data", "info", "fashion_mnst_lt"], "did you mean 'fashion_mnist_lt'?"),
        "recipe misspelt": (["train", "digits-lt"], "did you mean 'digits_lt'?"),
        "model misspelt": (["train", "digits_lt", "model.name=resnet33"], "did you mean 'resnet32'?"),
        "loss misspelt": (["train", "digits_lt", "loss.name=focall"], "did you mean 'focal'?"),
        "unknown key": (["train", "digits_lt", "train.epoch=3"], "did you mean 'train.epochs'?"),
        "bad value": (["train", "digits_lt", "train.epochs=many"], "train.epochs"),
        "unknown command": (["trian"], "invalid choice"),
        "bad method": (["retrain", str(tmp / "nowhere"), "--method", "gmll"], "--method"),
        "missing file": (["evaluate", str(tmp / "missing.npz")], "missing.npz"),
        "empty class": (["evaluate", str(empty)], "--exclude-empty"),
        "cifar absent": (["data", "info", "cifar10_lt", "--root", str(tmp / "no-cifar")], "data.download=true"),
        "run exists": (["train", "digits_lt", "--out", str(run)], "pass --resume to continue it or --overwrite"),
        "resume and overwrite": (["train", "--resume", str(run), "--overwrite"], None),
        "demo exists": (["demo", "--out", str(demo)], "pass --overwrite"),
        "plot suffix": (["evaluate", str(good), "--plot", str(tmp / "recall.bmp")], ".bmp"),
        "compare suffix": (["compare", str(good), str(good), "--out", str(tmp / "cmp"), "--plot", "p.bmp"], ".bmp"),
        "compare input": (["compare", str(tmp / "nothing-here")], "nothing-here"),
    }


def test_every_cli_error_is_one_line_in_cli_spellings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    failures = []
    for name, (argv, fragment) in _battery(tmp_path).items():
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        err = capsys.readouterr().err.strip()
        lines = err.splitlines()
        problems = []
        if code != 2:
            problems.append(f"exit {code}")
        if len(lines) != 1 or not lines[0].startswith("nolb: error: "):
            problems.append("not one 'nolb: error:' line")
        if err.count("nolb:") != 1 or "error: error" in err:
            problems.append("doubled prefix")
        if PYTHON_SPELLINGS.search(err):
            problems.append(f"Python spelling {PYTHON_SPELLINGS.search(err).group()!r}")
        if name == "demo exists" and "--resume" in err:
            problems.append("suggests --resume, which nolb demo does not have")
        if fragment is not None and fragment not in err:
            problems.append(f"missing {fragment!r}")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}: {err!r}")
    assert not failures, "\n".join(failures)


def test_python_callers_read_keywords(tmp_path):
    from nolb.engine.run_dir import RunDir
    from nolb.metrics import recall_report

    with pytest.raises(NolbError, match="exclude_empty=True") as info:
        recall_report(np.array([0, 0]), np.array([0, 0]), num_classes=2)
    assert "--exclude-empty" in cli_text(info.value)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".nolb-run").write_text("")  # a run directory nolb made (its marker)
    (run / "config.yaml").write_text("x: 1\n")
    with pytest.raises(NolbError, match="resume=True") as info:
        RunDir(run)
    assert "--resume" not in str(info.value) and "--resume" in cli_text(info.value)


def test_cli_text_strips_a_prefix_of_its_own():
    assert cli_text(NolbError("nolb: error: nolb: bad thing")) == "bad thing"
    assert cli_text(NolbError("a\n  b", cli="c\nd")) == "c d"


@pytest.mark.parametrize("value, expected", [
    ("cifar10-lt", "cifar10_lt"), ("CIFAR100_LT", "cifar100_lt"), ("digit_lt", "digits_lt"), ("imagenet", "imagenet_lt"),
])
def test_did_you_mean_finds_the_close_name(value, expected):
    names = ("cifar10_lt", "cifar100_lt", "digits_lt", "imagenet_lt", "places_lt")
    assert did_you_mean(value, names) == f" (did you mean {expected!r}?)"


def test_did_you_mean_stays_silent_when_nothing_is_close():
    assert did_you_mean("zzzz", ("cifar10_lt", "digits_lt")) == ""
