"""The README's "Your own data" commands, run as written on the tiny generated image set.

The block after the ``own-data-commands`` marker is read from README.md; each ``python``
line runs as a script and each ``nolb`` line through :func:`nolb.cli.main` in a scratch
folder, with only the epochs and selection grids shortened (the demo's ``--fast``
settings) so that the whole block takes well under a minute on a CPU.
"""

from __future__ import annotations

import runpy
import shlex
import sys
from pathlib import Path

import pytest

from nolb.cli import main

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- own-data-commands"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    after = text.split(MARKER, 1)[1]
    block = after.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split(" #")[0].strip() for line in block.splitlines() if line.strip()]


def _shortened(argv: list[str]) -> list[str]:
    from nolb.cli.demo import FAST_OVERRIDES

    if argv[0] == "run":
        return [*argv, *FAST_OVERRIDES, "train.epochs=1"]
    if argv[0] == "retrain":
        return [*argv, "retrain.epochs=1", "retrain.views=1"]
    return argv


def test_the_block_is_there_and_covers_both_layouts_and_a_checkpoint():
    commands = readme_commands()
    assert any("folder.yaml" in c and c.startswith("nolb run") for c in commands)
    assert any("list.yaml" in c and c.startswith("nolb run") for c in commands)
    assert any(c.startswith("nolb retrain") and "model.name=" in c for c in commands)
    assert any(c.startswith("nolb compare") for c in commands)


def test_readme_own_data_commands_run(tmp_path, monkeypatch, capsys):
    import torch
    import torchvision

    monkeypatch.chdir(tmp_path)
    commands = readme_commands()
    # "a model you trained elsewhere": a torchvision ResNet-18 state dict for the 4 tiny classes
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=4).state_dict(), tmp_path / "my_resnet18.pth")
    for command in commands:
        words = [w.replace("examples/", f"{REPO}/examples/") for w in shlex.split(command)]
        if words[0] == "python":
            monkeypatch.setattr(sys, "argv", words[1:])
            runpy.run_path(words[1], run_name="__main__")
            continue
        assert words[0] == "nolb", command
        code = main(_shortened(words[1:]))
        out = capsys.readouterr()
        assert code == 0, f"{command}\n{out.err[-2000:]}"
    assert (tmp_path / "runs" / "my-photos" / "report" / "report.md").is_file()
    assert (tmp_path / "runs" / "my-images" / "report" / "report.md").is_file()
    assert (tmp_path / "runs" / "my-resnet18" / "heads" / "paper.safetensors").is_file()
    assert (tmp_path / "runs" / "my-resnet18" / "heads" / "nolb.safetensors").is_file()
    compare = (tmp_path / "runs" / "compare" / "compare.md").read_text()
    assert "my-photos: base" in compare and "GML (paper)" in compare and "nolb (val-tuned GML)" in compare
    assert (tmp_path / "runs" / "compare" / "per_class_recall.png").is_file()


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
