"""Write a tiny long-tailed image set in both layouts nolb reads, for trying the README's
"Your own data" commands (and for the test that runs them): ``my_photos/`` (an ImageFolder
tree) and ``my_images/`` (images plus ``train.txt`` / ``val.txt`` / ``test.txt`` list files).
Each class is a colour plus noise, 16x16 PNG; training counts fall off geometrically.

    python examples/own_data/make_tiny_data.py [DIR] [--classes 4] [--most 24]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def make_tiny_data(folder: str | Path, classes: int = 4, most: int = 24, size: int = 16, seed: int = 0) -> None:
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(classes, 3))
    counts = {"train": [max(2, int(most * 0.25 ** (c / max(1, classes - 1)))) for c in range(classes)],
              "val": [3] * classes, "test": [4] * classes}
    lines: dict[str, list[str]] = {split: [] for split in counts}
    for split, per_class in counts.items():
        for c, n in enumerate(per_class):
            for i in range(n):
                pixels = np.clip(colours[c] + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                tree = folder / "my_photos" / split / f"class_{c}"
                tree.mkdir(parents=True, exist_ok=True)
                image.save(tree / f"{i}.png")
                flat = folder / "my_images" / "images"
                flat.mkdir(parents=True, exist_ok=True)
                image.save(flat / f"{split}_{c}_{i}.png")
                lines[split].append(f"images/{split}_{c}_{i}.png {c}")
    for split, text in lines.items():
        (folder / "my_images" / f"{split}.txt").write_text("\n".join(text) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=".")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--most", type=int, default=24, help="training images of the largest class")
    args = parser.parse_args()
    make_tiny_data(args.folder, args.classes, args.most)


if __name__ == "__main__":
    main()
