"""Generate the example prediction files in examples/predictions/ (synthetic, deterministic).

A simulated 100-class long-tailed problem shaped like CIFAR-100-LT (imbalance ratio 100:
``n_c = int(500 * 0.01 ** (c / 99))`` training images, 500 down to 5) with a balanced test
set of 100 images per class, and two simulated classifiers:

* ``ce_like.npz``: recall falls steeply from head to tail, and mistakes go to head classes
  (the typical picture of plain cross-entropy): a few tail classes sit near 0.
* ``balanced_like.npz``: a flatter recall profile (the typical picture after logit
  adjustment): lower on the head, far better on the worst classes.

For class ``c`` with ``x_c = log(n_c / 5) / log(100)`` in [0, 1] (1 = head, 0 = tail), an
image is classified correctly with probability ``p_c`` and otherwise as a class drawn with
probability proportional to ``n_j`` (the head bias of a long-tailed classifier):
``p_c = 0.02 + 0.88 * x_c ** 1.5`` (ce_like) or ``p_c = 0.40 + 0.32 * x_c`` (balanced_like).
These are not results of any real model: they only exercise ``nolb evaluate``.

Usage:
    python examples/make_example_predictions.py [--overwrite]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nolb.errors import NolbError
from nolb.io import write_npz

NUM_CLASSES = 100
TEST_PER_CLASS = 100
SEED = 0
OUT_DIR = Path(__file__).resolve().parent / "predictions"


def train_counts() -> np.ndarray:
    """The CIFAR-100-LT (IR 100) training profile: 500, 477, ..., 5 (10,847 images)."""
    return np.array([int(500 * 0.01 ** (c / (NUM_CLASSES - 1))) for c in range(NUM_CLASSES)], dtype=np.int64)


def simulate(correct_probability: np.ndarray, counts: np.ndarray, rng: np.random.Generator):
    """Labels and predictions of a classifier with per-class accuracy ``correct_probability``."""
    labels = np.repeat(np.arange(NUM_CLASSES), TEST_PER_CLASS)
    right = rng.random(labels.size) < correct_probability[labels]
    wrong_guess = rng.choice(NUM_CLASSES, size=labels.size, p=counts / counts.sum())
    wrong_guess = np.where(wrong_guess == labels, (labels + 1) % NUM_CLASSES, wrong_guess)
    return labels.astype(np.int16), np.where(right, labels, wrong_guess).astype(np.int16)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    counts = train_counts()
    head_to_tail = np.log(counts / counts.min()) / np.log(counts.max() / counts.min())
    models = {
        "ce_like": 0.02 + 0.88 * head_to_tail**1.5,
        "balanced_like": 0.40 + 0.32 * head_to_tail,
    }
    rng = np.random.default_rng(SEED)
    names = np.array([f"class_{c:02d}" for c in range(NUM_CLASSES)])
    for name, probability in models.items():
        path = OUT_DIR / f"{name}.npz"
        if path.exists() and not args.overwrite:
            raise NolbError(f"{path}: already exists (pass --overwrite to replace it)")
        labels, pred = simulate(probability, counts, rng)
        write_npz(path, labels=labels, pred=pred, train_counts=counts, class_names=names)
        print(f"wrote {path}: top-1 {np.mean(labels == pred):.4f}")


if __name__ == "__main__":
    main()
