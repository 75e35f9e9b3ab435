"""Splits as data: which images train, which select (validation), which are reported (test).

Every dataset names its images with string identities in one namespace per dataset:
``"train:1234"`` / ``"test:56"`` for row 1234 / 56 of the official training / test
arrays (CIFAR, Fashion-MNIST), ``"digits:17"`` for row 17 of scikit-learn's digits, and the
path relative to the data root for file datasets (``"train/cat/001.jpg"``,
``"n01440764/n01440764_10026.JPEG"``).  :func:`check_disjoint` refuses any identity in two
splits, so no image can serve two roles (docs/DATA.md, METHOD.md section 7);
:func:`write_splits` writes the record (``splits.json``) a run directory keeps.

Where images go is decided in :mod:`nolb.data.split_plans`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nolb.errors import NolbError
from nolb.io import read_json, write_json

SPLIT_NAMES = ("train", "val", "test")


def check_disjoint(splits: dict, allow: tuple[tuple[str, str], ...] = ()) -> None:
    """Raise NolbError naming the first image identity found in two splits (or twice in one).

    ``allow`` lists split pairs that may share images; only ``val_source=borrow_train``
    uses it (``(("train", "val"),)``), and that choice is written in every record.
    """
    seen: dict[str, str] = {}
    for split in SPLIT_NAMES:
        for identity in splits.get(split) or ():
            if identity in seen and (seen[identity], split) in allow:
                continue
            if identity in seen:
                where = f"twice in {split}" if seen[identity] == split else f"in both {seen[identity]} and {split}"
                raise NolbError(f"splits: image {identity!r} is {where} (no image may serve two roles)")
            seen[identity] = split


def splits_record(splits: dict) -> dict:
    """The JSON-ready ``{"train": [...], "val": [...], "test": [...], "sources": {...}}``."""
    return {**{s: list(splits.get(s) or []) for s in SPLIT_NAMES}, "sources": dict(splits.get("sources", {}))}


def write_splits(path: str | Path, splits: dict) -> Path:
    """Write ``splits.json`` atomically (the identities of every split and where each came from)."""
    path = Path(path)
    write_json(path, splits_record(splits))
    return path


def read_splits(path: str | Path, known: dict | None = None) -> dict:
    """Read a ``splits.json`` back and check it.

    Args:
        path: the file written by :func:`write_splits`.
        known: optional ``{split: identities}`` of a built dataset; every identity of the
            file must be one of them (an unknown image is an error naming it).

    Returns:
        The record, checked for disjointness.
    """
    path = Path(path)
    record = read_json(path)
    if not isinstance(record, dict) or not all(isinstance(record.get(s, []), list) for s in SPLIT_NAMES):
        raise NolbError(f"{path}: expected a splits.json object with train/val/test lists")
    try:
        check_disjoint(record)
    except NolbError as exc:
        raise NolbError(f"{path}: {exc}") from None
    if known is not None:
        pool = {i for s in SPLIT_NAMES for i in (known.get(s) or ())}
        for split in SPLIT_NAMES:
            unknown = next((i for i in record.get(split, []) if i not in pool), None)
            if unknown is not None:
                raise NolbError(f"{path}: {split} names unknown image {unknown!r}")
    return record


def identities(prefix: str, indices) -> list[str]:
    """``["<prefix>:<index>", ...]`` for rows of an array source."""
    return [f"{prefix}:{int(i)}" for i in np.asarray(indices).reshape(-1)]
