"""Frozen-backbone features: extraction over K augmented views and a checksummed cache.

Cached mode runs the backbone once per training view and once over the validation and
test splits; the head is then trained on the stored rows.  Each split is stored as

* ``<split>.features.npy``: (K N, D) float16 for the training views, float32 for validation
  and test (as the batches come), memory-mapped on load (row ``v N + i`` is view ``v`` of the
  i-th image in loader order);
* ``<split>.labels.npy``: (K N,) int64;
* ``<split>.manifest.json``: written LAST: the fingerprint of what produced the rows
  (backbone weights hash, data description, views, transform), the shape and the SHA-256
  of both files.

A split is reused only if its manifest exists, its fingerprint equals the requested one
and the checksums match; otherwise (stale, partial, corrupted) it is rebuilt.  Every
file goes through :func:`nolb.io.atomic_write`, so a kill leaves no half-written file
that could pass for a complete one.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from nolb.errors import NolbError
from nolb.progress import track
from nolb.retrain.inference import backbone_features
from nolb.io import atomic_write, read_json, to_json, write_json

CACHE_FORMAT = 2  # 2: validation/test rows in float32 (1: every split float16)
_HEADER_BYTES = 128  # a fixed .npy v1.0 header, rewritten once the row count is known


@dataclass
class FeatureSplit:
    """Features of one split.

    Attributes:
        features: (M, D) tensor (float16 when cached; a memory map when loaded from disk).
        labels: (M,) int64 labels.
        num_images: N, the number of images (M = views x N).
    """

    features: torch.Tensor
    labels: torch.Tensor
    num_images: int

    @property
    def views(self) -> int:
        return self.features.shape[0] // max(self.num_images, 1)


def model_fingerprint(module: nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes) of ``module``."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def labels_fingerprint(labels: Any) -> str:
    """SHA-256 of a label vector (identifies which images a split holds)."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(labels, dtype=np.int64)).tobytes()).hexdigest()


@torch.no_grad()
def iterate_features(backbone: nn.Module, loader: Iterable, views: int = 1, device: str | torch.device = "cpu"):
    """Yield ``(features float16 numpy (B, D), labels int64 numpy (B,))`` over ``views`` passes.

    Before view ``v`` the loader's ``set_epoch(v)`` is called when it has one, so
    augmented views differ and are reproducible.  The backbone runs through
    :func:`nolb.retrain.inference.backbone_features` (channels-last input, CPU chunks; same
    values up to float32 rounding; the model itself is not changed).
    """
    backbone.eval()
    for view in range(views):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(view)
        for x, y in track(loader, desc=f"features (view {view + 1}/{views})", unit="batch"):
            feats = backbone_features(backbone, x.to(device))  # float16 rows: channels-last, CPU chunks
            yield feats.cpu().to(torch.float16).numpy(), torch.as_tensor(y).cpu().long().numpy()


def extract_features(backbone: nn.Module, loader: Iterable, *, views: int = 1, device: str | torch.device = "cpu") -> FeatureSplit:
    """Features of every batch of ``loader`` (``views`` passes) in memory, float16.

    Args:
        backbone: maps a batch of images to (B, D) features (e.g. from
            :func:`nolb.retrain.backbone.split_classifier`).
        loader: yields ``(x, y)`` batches; ``set_epoch(v)`` is called before view v.
        views: number of passes (augmented views for a training loader).
        device: where the backbone runs.

    Returns:
        A :class:`FeatureSplit`.
    """
    chunks, labels = [], []
    for feats, y in iterate_features(backbone, loader, views, device):
        chunks.append(torch.from_numpy(feats))
        labels.append(torch.from_numpy(y))
    if not chunks:
        raise NolbError("feature extraction: the loader yielded no batch")
    features, all_labels = torch.cat(chunks), torch.cat(labels)
    return FeatureSplit(features, all_labels, features.shape[0] // views)


class FeatureCache:
    """A folder of per-split feature files, reused while their fingerprint matches.

    Args:
        folder: where the files live (created on first write).
        verify: check the SHA-256 of the files on load (``True``) or only their sizes.
    """

    def __init__(self, folder: str | Path, verify: bool = True) -> None:
        self.folder = Path(folder)
        self.verify = verify

    def paths(self, split: str) -> tuple[Path, Path, Path]:
        """(features, labels, manifest) paths of ``split``."""
        base = self.folder / split
        return Path(f"{base}.features.npy"), Path(f"{base}.labels.npy"), Path(f"{base}.manifest.json")

    def load(self, split: str, fingerprint: dict) -> FeatureSplit | None:
        """The cached split if it is complete, intact and produced as ``fingerprint`` says; else None."""
        features_path, labels_path, manifest_path = self.paths(split)
        if not manifest_path.is_file():
            return None
        try:
            manifest = read_json(manifest_path)
        except NolbError:
            return None
        if manifest.get("fingerprint") != _normalise(fingerprint) or manifest.get("format") != CACHE_FORMAT:
            return None
        for path, key in ((features_path, "features"), (labels_path, "labels")):
            if not path.is_file() or path.stat().st_size != manifest[key]["bytes"]:
                return None
            if self.verify and _sha256(path) != manifest[key]["sha256"]:
                return None
        try:
            features = np.load(features_path, mmap_mode="c")
            labels = np.load(labels_path)
        except (ValueError, OSError):
            return None
        if features.shape != tuple(manifest["shape"]) or labels.shape != (features.shape[0],):
            return None
        return FeatureSplit(torch.from_numpy(features), torch.from_numpy(labels), int(manifest["num_images"]))

    def build(
        self, split: str, fingerprint: dict, backbone: nn.Module, loader: Iterable, *,
        views: int = 1, device: str | torch.device = "cpu",
    ) -> FeatureSplit:
        """Run the backbone, write the split's files (manifest last) and return the loaded split."""
        return self.write(split, fingerprint, iterate_features(backbone, loader, views, device), views=views)

    def write(self, split: str, fingerprint: dict, batches: Iterable, *, views: int = 1) -> FeatureSplit:
        """Write ``batches`` (``(features float16 or float32 (B, D), labels (B,))`` numpy pairs, in row order) as
        the split's files (manifest last) and return the loaded split."""
        features_path, labels_path, manifest_path = self.paths(split)
        manifest_path.unlink(missing_ok=True)  # the old files are invalid from here on
        self.folder.mkdir(parents=True, exist_ok=True)
        labels: list[np.ndarray] = []
        rows, dim, descr = 0, None, None
        with atomic_write(features_path, "wb") as handle:
            handle.write(b"\0" * _HEADER_BYTES)
            for feats, y in batches:
                if dim is not None and feats.shape[1] != dim:
                    raise NolbError(f"feature extraction: feature width changed from {dim} to {feats.shape[1]}")
                dim = feats.shape[1]
                descr = descr or ("<f4" if feats.dtype == np.float32 else "<f2")  # float32 batches stay float32
                handle.write(np.ascontiguousarray(feats, dtype=descr).tobytes())
                labels.append(y)
                rows += feats.shape[0]
            if dim is None:
                raise NolbError(f"feature extraction ({split}): the loader yielded no batch")
            handle.seek(0)
            handle.write(_npy_header((rows, dim), descr))
        all_labels = np.concatenate(labels).astype(np.int64)
        with atomic_write(labels_path, "wb") as handle:
            np.save(handle, all_labels)
        manifest = {
            "format": CACHE_FORMAT,
            "split": split,
            "fingerprint": _normalise(fingerprint),
            "shape": [rows, dim],
            "num_images": rows // views,
            "views": views,
            "features": {"bytes": features_path.stat().st_size, "sha256": _sha256(features_path)},
            "labels": {"bytes": labels_path.stat().st_size, "sha256": _sha256(labels_path)},
        }
        write_json(manifest_path, manifest)
        loaded = self.load(split, fingerprint)
        if loaded is None:  # pragma: no cover - only if the disk changed under us
            raise NolbError(f"{manifest_path}: the feature cache could not be read back after writing")
        return loaded

    def get(
        self, split: str, fingerprint: dict, backbone: nn.Module, loader: Iterable, *,
        views: int = 1, device: str | torch.device = "cpu",
    ) -> tuple[FeatureSplit, bool]:
        """The cached split, building it first if absent or invalid.

        Returns:
            (the split, True if it was reused without running the backbone).
        """
        cached = self.load(split, fingerprint)
        if cached is not None:
            return cached, True
        return self.build(split, fingerprint, backbone, loader, views=views, device=device), False


def _npy_header(shape: tuple[int, int], descr: str) -> bytes:
    text = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (descr, *shape)
    padding = _HEADER_BYTES - 10 - len(text) - 1
    if padding < 0:  # pragma: no cover - needs > 10^40 rows
        raise NolbError(f"feature cache: shape {shape} too large for the header")
    header = (text + " " * padding + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _normalise(obj: Any) -> Any:
    """JSON round trip, so a fingerprint compares equal to the one read from a manifest."""
    return json.loads(to_json(obj))
