"""Input images for prediction: collecting paths and applying a model's stored preprocessing.

``collect_images(inputs)`` expands image files, folders (recursively, every non-hidden file
in sorted order) and list files (``.txt``/``.lst``/``.list``: one path per line, relative to
the list file's folder; blank lines and ``#`` comments skipped).  ``prepare_image`` decodes
one file and applies :class:`nolb.deploy.description.Preprocessing` with torchvision's v2
transforms (the same operations as nolb's evaluation loaders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms import v2

from nolb.deploy.description import Preprocessing
from nolb.errors import NolbError

LIST_SUFFIXES = (".txt", ".lst", ".list")


class UnreadableImage(Exception):
    """A file that is not a decodable image (reported by name and skipped, never fatal)."""


def _read_list(path: Path) -> list[Path]:
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            entry = Path(line)
            entries.append(entry if entry.is_absolute() else path.parent / entry)
    return entries


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """The image paths named by ``inputs`` (files, folders, list files), in order.

    Raises:
        NolbError: an input does not exist, or nothing was found at all.
    """
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            paths += sorted(p for p in item.rglob("*") if p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(item).parts))
        elif item.is_file() and item.suffix.lower() in LIST_SUFFIXES:
            paths += _read_list(item)
        elif item.is_file():
            paths.append(item)
        else:
            raise NolbError(f"{item}: no such image file, folder or list file")
    if not paths:
        raise NolbError(f"no input images found in {', '.join(str(i) for i in inputs) or '(no INPUT given)'}")
    return paths


def build_preprocess(p: Preprocessing) -> v2.Compose:
    """The v2 pipeline from a decoded PIL image to the (C, H, W) float32 network input."""
    steps: list = [v2.ToImage()]
    if p.resize:
        steps.append(v2.Resize(int(p.resize), antialias=True))
    if p.center_crop:
        steps.append(v2.CenterCrop(int(p.center_crop)))
    steps.append(_ExactSize(p.input_size))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(p.mean), list(p.std))]
    return v2.Compose(steps)


class _ExactSize(torch.nn.Module):
    """Resize to ``size`` x ``size`` only when the image has another size (else untouched)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def forward(self, image):
        if tuple(image.shape[-2:]) != (self.size, self.size):
            image = v2.functional.resize(image, [self.size, self.size], antialias=True)
        return image


def prepare_image(path: Path, preprocessing: Preprocessing, transform: v2.Compose | None = None) -> torch.Tensor:
    """Decode ``path`` and apply the preprocessing; raises :class:`UnreadableImage` with the reason."""
    try:
        with Image.open(path) as image:
            image = image.convert(preprocessing.color)
    except FileNotFoundError:
        raise UnreadableImage("file not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImage(" ".join(str(exc).split())[:120] or type(exc).__name__) from None
    return (transform or build_preprocess(preprocessing))(image)
