"""Table-driven bad input over the real CLI (``nolb.cli.main`` in-process).

Every case must give exactly one stderr line ``nolb: error: ...`` that names the problem
(and the file, line or config key), exit code 2, no Python traceback, and must leave every
file that existed before byte-for-byte unchanged (hashed before and after).  Images are
real CIFAR-10 test images from ``shared/data/cifar10`` written as PNG files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import SHARED_DATA, assert_one_line_error, tree_hashes


class World:
    """Inputs of one case under ``tmp``: prediction files, list files, images, configs."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.out = tmp / "outputs"
        self.out.mkdir()
        # An existing output of every kind a command might write: it must survive.
        (self.out / "report.json").write_text('{"keep": true}\n')
        rng = np.random.default_rng(0)
        self.labels = np.repeat(np.arange(4), 5)
        self.logits = rng.standard_normal((20, 4)).astype(np.float32)
        self.counts = np.array([50, 20, 8, 2])

    def npz(self, name: str, **arrays) -> Path:
        path = self.tmp / name
        np.savez(path, **arrays)
        return path

    def text(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def images(self, per_class=(3, 2, 2)) -> Path:
        """An image root with real CIFAR-10 PNGs: ``<root>/c<k>/<i>.png`` and matching lists."""
        source = SHARED_DATA / "cifar10" / "test.npz"
        if not source.is_file():
            pytest.skip(f"{source} not found")
        from PIL import Image

        with np.load(source) as data:
            x, y = data["x"], data["y"]
        root = self.tmp / "images"
        lines, test_lines = [], []  # train and test name different images (nolb refuses one in two splits)
        for label, n in enumerate(per_class):
            for i, index in enumerate(np.flatnonzero(y == label)[:n + 1]):
                name = f"c{label}/{i}.png" if i < n else f"c{label}/t{i}.png"
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(x[index]).save(path)
                (lines if i < n else test_lines).append(f"{name} {label}")
        self.text("train.txt", "\n".join(lines) + "\n")
        self.text("test.txt", "\n".join(test_lines) + "\n")
        return root


def _train(*args) -> list:
    return ["train", "digits_lt", "train.epochs=1", *args, "--quiet"]


# (id, builder(world) -> (argv, needles that the message must contain))
CASES = [
    # ------------------------------------------------------------------ nolb evaluate
    ("evaluate-missing-file", lambda w: (["evaluate", w.tmp / "nope.npz"], ["nope.npz", "no such file"])),
    ("evaluate-not-npz", lambda w: (["evaluate", w.text("junk.npz", "hello")], ["junk.npz"])),
    ("evaluate-truncated-npz", lambda w: (["evaluate", _truncated(w.npz("cut.npz", labels=w.labels, logits=w.logits))], ["cut.npz"])),
    ("evaluate-no-labels", lambda w: (["evaluate", w.npz("p.npz", logits=w.logits)], ["p.npz", "labels"])),
    ("evaluate-nan-scores", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=_with(w.logits, 3, np.nan))], ["p.npz", "nan", "row 3"])),
    ("evaluate-inf-scores", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=_with(w.logits, 7, np.inf))], ["p.npz", "inf", "row 7"])),
    ("evaluate-nan-labels", lambda w: (["evaluate", w.npz("p.npz", labels=_with(w.labels.astype(float), 2, np.nan), logits=w.logits)], ["p.npz", "nan"])),
    ("evaluate-length-mismatch", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels[:-3], logits=w.logits)], ["p.npz", "17", "20"])),
    ("evaluate-3d-scores", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=w.logits[:, :, None])], ["p.npz", "shape"])),
    ("evaluate-label-out-of-range", lambda w: (["evaluate", w.npz("p.npz", labels=_with(w.labels, 0, 9), logits=w.logits)], ["p.npz", "9"])),
    ("evaluate-class-without-test-sample", lambda w: (["evaluate", w.npz("p.npz", labels=np.minimum(w.labels, 2), logits=w.logits)], ["p.npz", "no test sample", "3"])),
    ("evaluate-train-counts-length", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=w.logits), "--train-counts", w.text("counts.txt", "5\n4\n3\n")], ["counts.txt", "3", "4 classes"])),
    ("evaluate-train-counts-nan", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=w.logits, train_counts=np.array([5.0, np.nan, 3, 2]))], ["p.npz", "train_counts"])),
    ("evaluate-train-counts-negative", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=w.logits), "--train-counts", w.text("counts.txt", "5\n-4\n3\n1\n")], ["train_counts"])),
    ("evaluate-existing-output", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=w.logits), "--json", w.out / "report.json"], ["report.json", "--overwrite"])),
    ("evaluate-negative-bootstrap", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=w.logits), "--bootstrap", "-5"], ["--bootstrap"])),
    ("evaluate-zero-recall-range", lambda w: (["evaluate", w.npz("p.npz", labels=w.labels, logits=w.logits), "--zero-recall", "2"], ["zero_recall"])),
    # ------------------------------------------------------------------ nolb data info
    ("data-unknown-dataset", lambda w: (["data", "info", "cifar1000_lt"], ["cifar1000_lt", "cifar10_lt", "digits_lt"])),
    ("data-missing-root", lambda w: (["data", "info", "cifar10_lt", "--root", w.tmp / "no_cifar"], ["no_cifar"])),
    ("data-missing-image-root", lambda w: (["data", "info", "list_file", "--root", w.tmp / "no_images", "--train-list", w.text("t.txt", "a.png 0\n"), "--test-list", w.tmp / "t.txt"], ["no_images"])),
    ("data-malformed-list-line", lambda w: (["data", "info", "list_file", "--root", w.images(), "--train-list", w.text("bad.txt", "c0/0.png 0\nc1/0.png 1\nc1/1.png\n"), "--test-list", w.tmp / "test.txt"], ["bad.txt:3"])),
    ("data-non-integer-label", lambda w: (["data", "info", "list_file", "--root", w.images(), "--train-list", w.text("bad.txt", "c0/0.png 0\nc1/0.png one\n"), "--test-list", w.tmp / "test.txt"], ["bad.txt:2", "one"])),
    ("data-label-out-of-range", lambda w: (["data", "info", "list_file", "--root", w.images(), "--num-classes", "3", "--train-list", w.text("bad.txt", "c0/0.png 0\nc1/0.png 1\nc2/0.png 7\n"), "--test-list", w.tmp / "test.txt"], ["bad.txt:3", "7"])),
    ("data-negative-label", lambda w: (["data", "info", "list_file", "--root", w.images(), "--train-list", w.text("bad.txt", "c0/0.png 0\nc1/0.png -1\n"), "--test-list", w.tmp / "test.txt"], ["bad.txt:2", "-1"])),
    ("data-class-without-training-image", lambda w: (["data", "info", "list_file", "--root", w.images(), "--train-list", w.text("gap.txt", "c0/0.png 0\nc2/0.png 2\n"), "--test-list", w.tmp / "test.txt"], ["gap.txt", "class 1"])),
    ("data-empty-image-folder-class", lambda w: (["data", "info", "image_folder", "--root", _image_folder(w)], ["empty_class"])),
    ("data-imbalance-ratio-below-1", lambda w: (["data", "info", "digits_lt", "--imbalance-ratio", "0.5"], ["imbalance"])),
    ("data-unknown-option", lambda w: (["data", "info", "digits_lt", "--option", "imbalance_ration=10"], ["imbalance_ration"])),
    ("data-existing-plot", lambda w: (["data", "info", "digits_lt", "--plot", w.out / "report.json"], ["report.json", "--force"])),
    # ------------------------------------------------------------------ nolb train: config
    ("train-unknown-model", lambda w: (_train("model.name=resnet33"), ["model.name", "resnet33", "resnet32", "small_cnn"])),
    ("train-unknown-loss", lambda w: (_train("loss.name=gmll"), ["loss.name", "gmll", "ce"])),
    ("train-unknown-dataset", lambda w: (_train("data.name=digitz_lt"), ["data.name", "digitz_lt", "digits_lt"])),
    ("train-unknown-sampler", lambda w: (_train("data.sampler=balanced", "--out", w.tmp / "run"), ["data.sampler", "balanced", "class_balanced"])),
    ("train-negative-lr", lambda w: (_train("optim.lr=-0.1"), ["optim.lr"])),
    ("train-zero-epochs", lambda w: (["train", "digits_lt", "train.epochs=0", "--quiet"], ["train.epochs"])),
    ("train-batch-size-0", lambda w: (_train("train.batch_size=0"), ["train.batch_size"])),
    ("train-imbalance-ratio-below-1", lambda w: (_train("data.imbalance_ratio=0.5"), ["data.imbalance_ratio"])),
    ("train-wrong-type", lambda w: (_train("train.batch_size=lots"), ["train.batch_size", "lots"])),
    ("train-unknown-key-hint", lambda w: (_train("train.epoch=3"), ["train.epoch", "did you mean", "train.epochs"])),
    ("train-unknown-key-in-yaml", lambda w: (["train", w.text("cfg.yaml", "base: digits_lt\ntrain:\n  epochs: 1\n  bach_size: 8\n"), "--quiet"], ["cfg.yaml", "4", "bach_size", "batch_size"])),
    ("train-invalid-yaml", lambda w: (["train", w.text("cfg.yaml", "train:\n  epochs: [1\n"), "--quiet"], ["cfg.yaml"])),
    ("train-missing-config", lambda w: (["train", w.tmp / "nope.yaml", "--quiet"], ["nope.yaml"])),
    ("train-bad-override-syntax", lambda w: (_train("epochs"), ["epochs"])),
    # `outputs` holds the user's files and no .nolb-run marker: suggesting --overwrite would delete them
    ("train-existing-run-dir", lambda w: (_train("--out", w.out), ["outputs", "not a nolb run directory"])),
    ("train-resume-without-checkpoint", lambda w: (["train", "--resume", w.out, "--quiet"], ["outputs", "checkpoint"])),
    ("train-resume-with-config", lambda w: (["train", "digits_lt", "--resume", w.out, "--quiet"], ["--resume"])),
    ("train-corrupt-image", lambda w: (_list_train(w, workers=0), ["c1/1.png", "corrupt"])),
    ("train-corrupt-image-in-worker", lambda w: (_list_train(w, workers=1), ["c1/1.png", "corrupt"])),
    ("train-missing-image", lambda w: (_list_train(w, workers=0, missing=True), ["c0/9.png", "not found"])),
    # ------------------------------------------------------------------ nolb train: weights
    ("train-weights-missing", lambda w: (_train(f"model.weights={w.tmp / 'none.safetensors'}", "--out", w.tmp / "run"), ["none.safetensors"])),
    ("train-weights-other-architecture", lambda w: (_train(f"model.weights={_real_weights()}", "--out", w.tmp / "run"), ["resnet20-12fca82f.th", "architecture"])),
    ("train-weights-other-class-count", lambda w: (_train(f"model.weights={_small_cnn_weights(w, classes=7)}", "--out", w.tmp / "run"), ["cnn7.safetensors", "7 classes"])),
    ("train-weights-truncated", lambda w: (_train(f"model.weights={_truncated(_small_cnn_weights(w, classes=10))}", "--out", w.tmp / "run"), ["cnn10.safetensors", "truncated"])),
    ("train-weights-not-a-state-dict", lambda w: (_train(f"model.weights={_torch_save(w, 'list.pth', [1, 2, 3])}", "--out", w.tmp / "run"), ["list.pth", "state dict"])),
]


# Stage 2/3 cases get a tiny trained run (``w.run``, shared, must stay unchanged) and a head.
CASES += [
    ("retrain-missing-run", lambda w: (["retrain", w.tmp / "no_run", "--out", w.tmp / "o"], ["no_run"])),
    ("retrain-zero-epochs", lambda w: (["retrain", w.run, "retrain.epochs=0", "--out", w.tmp / "o"], ["epochs"])),
    ("retrain-negative-lr", lambda w: (["retrain", w.run, "retrain.lr=-0.1", "--out", w.tmp / "o"], ["lr"])),
    ("retrain-batch-size-0", lambda w: (["retrain", w.run, "retrain.batch_size=0", "--out", w.tmp / "o"], ["batch_size"])),
    ("retrain-zero-views", lambda w: (["retrain", w.run, "retrain.views=0", "--out", w.tmp / "o"], ["views"])),
    ("retrain-nan-prior-strength", lambda w: (["retrain", w.run, "retrain.prior_strength=nan", "--out", w.tmp / "o"], ["prior_strength"])),
    ("retrain-existing-output", lambda w: (["retrain", w.run, "--out", _existing_retrain(w)], ["retrain.json", "--overwrite"])),
    ("retrain-other-architecture", lambda w: (["retrain", _real_weights(), "digits_lt", "model.name=resnet20", "model.options={}", "--out", w.tmp / "o"], ["resnet20-12fca82f.th", "architecture"])),
    ("retrain-truncated-run-checkpoint", lambda w: (["retrain", _damaged_run(w), "--out", w.tmp / "o"], ["best.safetensors"])),
    ("ensemble-missing-run", lambda w: (["ensemble", w.tmp / "no_run", "--out", w.tmp / "o"], ["no_run"])),
    ("ensemble-missing-head", lambda w: (["ensemble", w.run, f"ensemble.head={w.tmp / 'none.safetensors'}", "--out", w.tmp / "o"], ["none.safetensors"])),
    ("ensemble-no-stage-2", lambda w: (["ensemble", w.run, "--out", w.tmp / "o"], ["retrain"])),
    ("ensemble-negative-temperature", lambda w: (["ensemble", w.run, f"ensemble.head={_head(w)}", "ensemble.t1=-1", "--out", w.tmp / "o"], ["t1"])),
    ("ensemble-nan-temperature", lambda w: (["ensemble", w.run, f"ensemble.head={_head(w)}", "ensemble.t1=nan", "--out", w.tmp / "o"], ["t1", "nan"])),
    ("retrain-bogus-method", lambda w: (["retrain", w.run, "retrain.method=bogus", "--out", w.tmp / "o"], ["retrain.method", "bogus"])),
    ("retrain-stage-1-key-on-a-finished-run", lambda w: (["retrain", w.run, "train.epochs=3", "--out", w.tmp / "o"], ["train.epochs", "finished run"])),
    ("train-bogus-retrain-method", lambda w: (_train("retrain.method=bogus", "--out", w.tmp / "run"), ["retrain.method", "bogus"])),
    ("ensemble-head-class-count", lambda w: (["ensemble", w.run, f"ensemble.head={_head(w, classes=7)}", "--out", w.tmp / "o"], ["head7.safetensors"])),
]


def _existing_retrain(w: World) -> Path:
    (w.out / "retrain.json").write_text('{"keep": true}\n')
    return w.out


def _damaged_run(w: World) -> Path:
    import shutil

    run = w.tmp / "damaged_run"
    shutil.copytree(w.run, run)
    _truncated(run / "checkpoints" / "best.safetensors")
    return run


def _head(w: World, classes: int = 10) -> Path:
    import torch

    from nolb.io import load_safetensors, save_safetensors

    weight = load_safetensors(w.run / "checkpoints" / "best.safetensors")[0]["classifier.weight"]
    path = w.tmp / f"head{classes}.safetensors"
    save_safetensors(path, {"weight": torch.zeros(classes, weight.shape[1]), "bias": torch.zeros(classes)})
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A one-epoch digits_lt run (small_cnn, width 8): the input of the stage 2/3 cases."""
    from nolb.config import load_config
    from nolb.engine import train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(load_config("digits_lt", ["train.epochs=1", "model.options={width: 8}"]), run_dir=out, quiet=True)
    return out


def _with(array: np.ndarray, index: int, value) -> np.ndarray:
    array = np.array(array, copy=True)
    array.reshape(len(array), -1)[index, 0] = value
    return array


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _image_folder(w: World) -> Path:
    w.images()
    root = w.tmp / "tree"
    for split in ("train", "test"):
        for label in (0, 1):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True)
            (folder / "0.png").write_bytes((w.tmp / "images" / f"c{label}" / "0.png").read_bytes())
        (root / split / "empty_class").mkdir()
    return root


def _list_train(w: World, workers: int, missing: bool = False) -> list:
    """`nolb train` on a list-file dataset of real PNGs, one of them corrupt (or missing)."""
    root = w.images()
    if missing:
        (root / "c0" / "9.png").unlink(missing_ok=True)
        w.text("train.txt", (w.tmp / "train.txt").read_text() + "c0/9.png 0\n")
    else:
        (root / "c1" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n but the rest is garbage")
    options = f"{{train_list: {w.tmp / 'train.txt'}, test_list: {w.tmp / 'test.txt'}, image_size: 32}}"
    return ["train", "digits_lt", "data.name=list_file", f"data.root={root}", "data.imbalance_ratio=null",
            f"data.options={options}", f"data.num_workers={workers}", "train.epochs=1", "train.batch_size=8",
            "--out", w.tmp / "run", "--quiet"]


def _real_weights() -> Path:
    path = SHARED_DATA / "weights" / "resnet20-12fca82f.th"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def _small_cnn_weights(w: World, classes: int) -> Path:
    from nolb.config import load_config
    from nolb.models import build_model, save_weights

    config = load_config("digits_lt")
    model = build_model("small_cnn", classes, in_channels=1, **config.model.options)
    path = w.tmp / f"cnn{classes}.safetensors"
    save_weights(path, model)
    return path


def _torch_save(w: World, name: str, obj) -> Path:
    import torch

    path = w.tmp / name
    torch.save(obj, path)
    return path


def test_at_least_25_cases():
    assert len(CASES) >= 25


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,build", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line(tmp_path, run_cli, name, build, monkeypatch, request):
    monkeypatch.chdir(tmp_path)  # a default run directory (runs/...) would land here
    world = World(tmp_path)
    uses_run = name.startswith(("retrain-", "ensemble-"))
    world.run = request.getfixturevalue("trained_run") if uses_run else None
    argv, needles = build(world)
    before = tree_hashes(tmp_path)
    run_before = tree_hashes(world.run) if uses_run else None
    rc, _, err = run_cli(argv)
    assert_one_line_error(rc, err, *needles)
    after = tree_hashes(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "an existing file was changed"
    if uses_run:
        assert tree_hashes(world.run) == run_before, "the stage-1 run directory was changed"



@pytest.mark.timeout(60)
@pytest.mark.parametrize("override", ["model.weights={tmp}/none.safetensors", "data.sampler=balanced"])
def test_failed_start_leaves_no_run_directory(tmp_path, run_cli, override):
    """A run refused at start-up (bad weights, bad sampler) must not leave a half-made run
    directory behind: it would block the corrected command ("run directory exists"), and
    --overwrite then refuses a folder without config.yaml as "not a nolb run directory"."""
    out = tmp_path / "run"
    rc, _, err = run_cli(_train(override.format(tmp=tmp_path), "--out", out))
    assert_one_line_error(rc, err)
    assert not out.exists(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))
