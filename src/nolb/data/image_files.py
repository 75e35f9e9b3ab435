"""A dataset of image files on disk, ``(path, label)`` pairs, decoded with PIL on access."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from nolb.errors import NolbError


def load_rgb(path: Path) -> Image.Image:
    """Open an image file as RGB; a missing, unreadable or corrupt file raises NolbError naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise NolbError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise NolbError(f"{path}: unreadable or corrupt image ({' '.join(str(exc).split())[:120]})") from None


class ImageFileDataset(Dataset):
    """Images listed as ``(relative path, label)`` under a root folder.

    ``__getitem__`` gives ``(PIL RGB image, int label)``; the loader's v2 pipeline turns it
    into a normalised tensor.

    Args:
        root: folder the paths are relative to.
        samples: ``(relative path, label)`` pairs.
        class_names: optional names, one per class.
    """

    def __init__(self, root: str | Path, samples: Sequence[tuple[str, int]],
                 class_names: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.paths = [p for p, _ in samples]
        self.labels = torch.as_tensor([int(label) for _, label in samples], dtype=torch.int64)
        self.class_names = list(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return load_rgb(self.root / self.paths[index]), int(self.labels[index])

    @property
    def targets(self) -> list[int]:
        """Labels as a Python list (torchvision's attribute name)."""
        return self.labels.tolist()
