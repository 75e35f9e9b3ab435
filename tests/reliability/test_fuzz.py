"""Generated bad input against the real CLI (seeded, bounded, in-process).

Two generators, each a fixed list of cases drawn from ``random.Random(SEED)``:

* :func:`config_cases`: recipe files with one defect each (a non-finite, huge, wrongly
  typed or structurally wrong value at a random key; duplicate keys; alias bombs; binary
  bytes; truncation; deep nesting; a ``base:`` that is not a name), given to ``nolb train``;
* :func:`npz_cases`: prediction files with one defect each (non-finite scores, labels out of
  range, wrong shapes or dtypes, pickled objects, huge training counts, truncation, random
  bytes), given to ``nolb evaluate --json OUT --overwrite``.

Every case must hold the contract: exit code 2, exactly one stderr line ``nolb: error: ...``,
no exception out of ``main`` (no traceback), no run directory made and every file that
existed before unchanged.  Cases that flip random bytes of a valid file may also be accepted
(exit 0): a flip inside the numbers is still a valid file.  ``docs/RELIABILITY.md`` gives the
counts (``python tests/reliability/test_fuzz.py`` prints them).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import random
import sys
from pathlib import Path

import numpy as np
import pytest

SEED = 14
N_CONFIG = 60
N_NPZ = 60

# Scalar keys whose type is not Optional (null is wrong for every one of them).
NUMERIC_KEYS = ["optim.lr", "optim.momentum", "optim.weight_decay", "optim.gamma", "optim.min_lr",
                "optim.warmup_epochs", "train.epochs", "train.batch_size", "train.eval_batch_size",
                "train.eval_every", "train.seed", "loss.mixup_alpha", "data.num_workers", "retrain.lr",
                "retrain.epochs", "retrain.batch_size", "retrain.views", "ensemble.t1", "ensemble.t2"]
BAD_VALUES = [".inf", "-.inf", ".nan", "1.0e+30", "-1.0e+30", "99999999999999999999999", "'abc'", "[1, 2]",
              "{a: 1}", "null", "''", "0x7fffffffffffffffff"]
STRING_KEYS = ["model.name", "loss.name", "data.name", "data.sampler", "train.precision", "train.device",
               "optim.schedule", "model.head", "train.select_metric"]
BAD_STRINGS = ["'no_such_thing'", "[x]", "{a: b}", "12", "'cuda:x'", "'\\u0000'", "'" + "x" * 5000 + "'"]


def _recipe(key: str, value: str) -> str:
    section, name = key.split(".")
    return f"base: digits_lt\n{section}:\n  {name}: {value}\n"


def config_cases(seed: int = SEED, n: int = N_CONFIG) -> list[tuple[str, bytes]]:
    """``n`` (id, file bytes) pairs, each a recipe with one defect."""
    rng = random.Random(seed)
    structural = [
        ("duplicate-key", b"base: digits_lt\ntrain:\n  epochs: 1\n  epochs: 2\n"),
        ("duplicate-section", b"base: digits_lt\ntrain: {epochs: 1}\ntrain: {epochs: 2}\n"),
        ("unknown-key", b"base: digits_lt\ntrain: {epoch: 1}\n"),
        ("unknown-section", b"base: digits_lt\ntrainer: {epochs: 1}\n"),
        ("top-is-list", b"- base\n- digits_lt\n"),
        ("top-is-scalar", b"42\n"),
        ("section-is-scalar", b"base: digits_lt\ntrain: 5\n"),
        ("binary", bytes(range(256)) * 4),
        ("utf16", "train: {epochs: 1}\n".encode("utf-16")),
        ("nul-byte", b"base: digits_lt\x00\n"),
        ("truncated-flow", b"base: digits_lt\ntrain: {epochs: 1, batch_size: [8,\n"),
        ("bad-indent", b"base: digits_lt\ntrain:\n  epochs: 1\n batch_size: 8\n"),
        ("deep-nesting", b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n"),
        ("alias-bomb", _alias_bomb()),
        ("alias-loop", b"a: &a [*a]\n"),
        ("base-list", b"base: [digits_lt]\n"),
        ("base-missing", b"base: no_such_recipe_anywhere\n"),
        ("base-self", b"base: fuzz.yaml\n"),
        ("python-tag", b"base: digits_lt\ntrain: {epochs: !!python/object/apply:os.system [echo]}\n"),
        ("complex-key", b"? [a, b]\n: 1\n"),
    ]
    cases = [(name, data) for name, data in structural]
    while len(cases) < n:
        if rng.random() < 0.7:
            key, value = rng.choice(NUMERIC_KEYS), rng.choice(BAD_VALUES)
        else:
            key, value = rng.choice(STRING_KEYS), rng.choice(BAD_STRINGS)
        cases.append((f"{key}={value[:20]}", _recipe(key, value).encode()))
    return cases[:n]


def _alias_bomb() -> bytes:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return ("\n".join(lines) + "\n").encode()


def npz_cases(seed: int = SEED, n: int = N_NPZ) -> list[tuple[str, bytes, bool]]:
    """``n`` (id, file bytes, must_refuse) triples, each a prediction file with one defect."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 5)
    logits = nrng.standard_normal((20, 4)).astype(np.float32)
    counts = np.array([50, 20, 8, 2])

    def npz(**arrays) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def with_value(array, value):
        array = np.array(array, dtype=np.float64 if isinstance(value, float) else array.dtype, copy=True)
        array.flat[rng.randrange(array.size)] = value
        return array

    valid = npz(labels=labels, logits=logits, train_counts=counts)
    makers = [
        ("nan-logit", lambda: npz(labels=labels, logits=with_value(logits, np.nan))),
        ("inf-logit", lambda: npz(labels=labels, logits=with_value(logits, np.inf))),
        ("label-too-big", lambda: npz(labels=with_value(labels, rng.choice([4, 99, 2**40])), logits=logits)),
        ("label-negative", lambda: npz(labels=with_value(labels, -rng.randrange(1, 1000)), logits=logits)),
        ("label-fraction", lambda: npz(labels=with_value(labels, 1.5), logits=logits)),
        ("label-nan", lambda: npz(labels=with_value(labels, np.nan), logits=logits)),
        ("logits-3d", lambda: npz(labels=labels, logits=logits.reshape(20, 2, 2))),
        ("logits-strings", lambda: npz(labels=labels, logits=logits.astype(str))),
        ("logits-complex", lambda: npz(labels=labels, logits=logits.astype(np.complex64))),
        ("length-mismatch", lambda: npz(labels=labels[: rng.randrange(0, 19)], logits=logits)),
        ("empty", lambda: npz(labels=labels[:0], logits=logits[:0])),
        ("no-labels", lambda: npz(logits=logits)),
        ("no-scores", lambda: npz(labels=labels)),
        ("pickled-object", lambda: npz(labels=labels, logits=np.array([object()] * 20, dtype=object))),
        ("counts-huge", lambda: npz(labels=labels, logits=logits, train_counts=with_value(counts, 1e30))),
        ("counts-negative", lambda: npz(labels=labels, logits=logits, train_counts=with_value(counts, -5))),
        ("counts-nan", lambda: npz(labels=labels, logits=logits, train_counts=with_value(counts, np.nan))),
        ("counts-length", lambda: npz(labels=labels, logits=logits, train_counts=counts[:3])),
        ("truncated", lambda: valid[: rng.randrange(1, len(valid) - 1)]),
        ("garbage", lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))),
        ("empty-file", lambda: b""),
        ("npy-not-npz", lambda: _npy(logits)),
    ]
    cases = [(name, make(), True) for name, make in makers]
    while len(cases) < n:
        data = bytearray(valid)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cases.append((f"byte-flip-{len(cases)}", bytes(data), False))
    return cases[:n]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def check_case(argv: list[str], folder: Path, may_accept: bool = False, protected: Path | None = None) -> str | None:
    """Run ``nolb argv`` in-process; None when the contract held, else what broke."""
    from nolb.cli import main

    before = _hashes(folder)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # a traceback would have reached the user
        return f"exception {type(exc).__name__}: {str(exc)[:200]}"
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if rc == 0 and may_accept:
        return None
    if rc != 2:
        return f"exit code {rc}: {err.getvalue()[:300]}"
    if len(lines) != 1 or not lines[0].startswith("nolb: error: "):
        return f"not one line: {err.getvalue()[:300]}"
    after = _hashes(folder)
    if {k: v for k, v in after.items() if k in before} != before or set(after) - set(before):
        return "files changed"
    if protected is not None and protected.exists():
        return f"{protected.name} was created"
    return None


@pytest.mark.timeout(300)
def test_generated_bad_configs_hold_the_contract(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failures = []
    cases = config_cases()
    for i, (name, data) in enumerate(cases):
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        (folder / "fuzz.yaml").write_bytes(data)
        problem = check_case(["train", folder / "fuzz.yaml", "--out", folder / "run", "--quiet"], folder,
                             protected=folder / "run")
        if problem:
            failures.append(f"{name}: {problem}")
    assert len(cases) == N_CONFIG
    assert not failures, "\n".join(failures)


@pytest.mark.timeout(300)
def test_generated_bad_prediction_files_hold_the_contract(tmp_path):
    failures = []
    cases = npz_cases()
    for i, (name, data, must_refuse) in enumerate(cases):
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        (folder / "pred.npz").write_bytes(data)
        (folder / "out.json").write_text('{"keep": true}\n')
        argv = ["evaluate", folder / "pred.npz", "--json", folder / "out.json", "--overwrite"]
        problem = check_case(argv, folder, may_accept=not must_refuse)
        if problem:
            failures.append(f"{name}: {problem}")
    assert len(cases) == N_NPZ and sum(refuse for *_, refuse in cases) >= 20
    assert not failures, "\n".join(failures)


if __name__ == "__main__":  # counts for docs/RELIABILITY.md
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        held_config = held_npz = 0
        for i, (name, data) in enumerate(config_cases()):
            folder = root / f"c{i}"
            folder.mkdir()
            (folder / "fuzz.yaml").write_bytes(data)
            problem = check_case(["train", folder / "fuzz.yaml", "--out", folder / "run", "--quiet"], folder,
                                 protected=folder / "run")
            held_config += problem is None
            if problem:
                print(f"config {name}: {problem}", file=sys.stderr)
        for i, (name, data, must_refuse) in enumerate(npz_cases()):
            folder = root / f"n{i}"
            folder.mkdir()
            (folder / "pred.npz").write_bytes(data)
            (folder / "out.json").write_text('{"keep": true}\n')
            problem = check_case(["evaluate", folder / "pred.npz", "--json", folder / "out.json", "--overwrite"],
                                 folder, may_accept=not must_refuse)
            held_npz += problem is None
            if problem:
                print(f"npz {name}: {problem}", file=sys.stderr)
        print(f"configs: {held_config}/{N_CONFIG} held; prediction files: {held_npz}/{N_NPZ} held")
