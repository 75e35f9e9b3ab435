"""Where each image goes: validation of array datasets, and a test split carved for file datasets.

:func:`plan_validation` (CIFAR-LT, Fashion-MNIST-LT): validation from training images the
long-tailed subsample left unused, else a seeded stratified slice of the official test set
that leaves the reported test set (``val_source="auto"``); :func:`fill_missing_test`
(image_folder, list files, iNaturalist 2018): a dataset with validation but no test split
gets a seeded stratified test part of its validation split, or a one-line error.  The
resulting splits never share an image (docs/DATA.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nolb.data.splits import SPLIT_NAMES
from nolb.errors import NolbError

VAL_SOURCES = ("auto", "test", "borrow_train")


def stratified_slice(labels: np.ndarray, per_class: dict[int, int], seed: int,
                     what: str = "test set") -> tuple[np.ndarray, np.ndarray]:
    """Draw ``per_class[c]`` images of each class at random (seeded); return ``(chosen, rest)``.

    ``chosen`` is ordered class by class, ``rest`` keeps dataset order.  Asking a class for
    more images than it has raises NolbError (e.g. a test slice larger than the test set).
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.RandomState(seed)
    chosen = []
    for c in sorted(per_class):
        n = int(per_class[c])
        if n <= 0:
            continue
        pool = np.where(labels == c)[0]
        if n > len(pool):
            raise NolbError(f"val_per_class: class {c} needs {n} validation images from the {what}, "
                            f"which has only {len(pool)} images of it")
        chosen.append(np.sort(rng.choice(pool, n, replace=False)))
    chosen_idx = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(len(labels)), chosen_idx)
    return chosen_idx.astype(np.int64), rest.astype(np.int64)


@dataclass
class ValidationPlan:
    """Where each class's validation images come from (array datasets).

    Attributes:
        from_train: indices into the official training arrays (unused, or borrowed).
        from_test: indices into the official test arrays (removed from the reported test).
        test_kept: indices of the official test images that stay in the reported test set.
        by_class: ``{class: "unused" | "test" | "borrowed"}``.
        borrowed: ``{class: images also used for training}`` (only with ``borrow_train``).
    """

    from_train: np.ndarray
    from_test: np.ndarray
    test_kept: np.ndarray
    by_class: dict[int, str] = field(default_factory=dict)
    borrowed: dict[int, int] = field(default_factory=dict)


def plan_validation(unused: list[np.ndarray], kept: list[np.ndarray], test_labels: np.ndarray,
                    per_class: int, seed: int, source: str = "auto") -> ValidationPlan:
    """Choose ``per_class`` validation images per class that no training or reported test image is.

    Args:
        unused: per class, official training indices the long-tailed subsample left unused.
        kept: per class, the training indices (only read by ``"borrow_train"``).
        test_labels: labels of the official test set.
        per_class: validation images per class (0: no validation split).
        seed: seed of every draw (independent of the subsample's seed).
        source: ``"auto"`` (unused training images for a class that has enough, otherwise
            a stratified slice of the official test set for that class, which then leaves
            the reported test set), ``"test"`` (every class from the test set) or
            ``"borrow_train"`` (explicit opt-in, the behaviour before issue 12: the shortfall
            comes from the class's own training images; recorded as borrowed).
    """
    if source not in VAL_SOURCES:
        raise NolbError(f"data.val_source: unknown value {source!r}; expected one of {', '.join(VAL_SOURCES)}")
    if per_class < 0:
        raise NolbError(f"data.val_per_class: must be >= 0, got {per_class}")
    rng = np.random.RandomState(seed)
    # borrowed images come from their own stream, so the other classes' draws equal the default's
    borrow_rng = np.random.RandomState(seed + 104729)
    from_train, test_need, by_class, borrowed = [], {}, {}, {}
    for c, (free, own) in enumerate(zip(unused, kept)):
        if per_class == 0:
            continue
        if source != "test" and len(free) >= per_class:
            from_train.append(rng.choice(free, per_class, replace=False))
            by_class[c] = "unused"
        elif source == "borrow_train":
            short = per_class - len(free)
            if short > len(own):
                raise NolbError(f"data.val_per_class: class {c} has only {len(free) + len(own)} images, "
                                f"asked for {per_class}")
            from_train.append(np.concatenate([free, borrow_rng.choice(own, short, replace=False)]))
            by_class[c], borrowed[c] = "borrowed", int(short)
        else:
            test_need[c] = per_class
            by_class[c] = "test"
    from_test, test_kept = stratified_slice(test_labels, test_need, seed + 7919, "official test set")
    train_idx = np.concatenate(from_train).astype(np.int64) if from_train else np.zeros(0, np.int64)
    return ValidationPlan(train_idx, from_test, test_kept, by_class, borrowed)


def _class_list(classes: list[int]) -> str:
    if len(classes) > 6:
        return f"{len(classes)} classes"
    return ("class " if len(classes) == 1 else "classes ") + ", ".join(str(c) for c in classes)


def describe_array_splits(plan: ValidationPlan, n_train: int, n_official_train: int, n_official_test: int,
                          per_class: int, seed: int, val_seed: int) -> dict[str, str]:
    """The one-line ``sources`` of an array dataset's splits (for info, reports and splits.json)."""
    n_val = len(plan.from_train) + len(plan.from_test)
    parts = []
    for kind, words in (("unused", "training images the subsample left unused"),
                        ("test", "a stratified slice of the official test set, left out of the reported test set"),
                        ("borrowed", "training images ALSO USED FOR TRAINING (val_source=borrow_train)")):
        classes = [c for c, k in plan.by_class.items() if k == kind]
        if classes:
            parts.append(f"{_class_list(classes)} from {words}")
    val = (f"{n_val:,} images, {per_class} per class: " + "; ".join(parts) + f" (seed {val_seed})"
           if n_val else "none")
    held = len(plan.from_test)
    test = f"{len(plan.test_kept):,} of the {n_official_test:,} official test images"
    test += (f"; {held:,} {'is' if held == 1 else 'are'} validation" if held else " (all of them)")
    return {"train": f"{n_train:,} of the {n_official_train:,} official training images "
                     f"(Cao et al. long-tailed subsample, seed {seed})",
            "val": val, "test": test}


def carve_per_class(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a labelled split in two per class: ``(part, rest)`` with ``floor(n_c * fraction)`` in part.

    Seeded and stratified; ``rest`` keeps at least ``ceil`` of each class, so with
    ``fraction = 0.5`` a class of 3 images gives 1 to ``part`` and 2 to ``rest``.
    """
    if not 0.0 < fraction < 1.0:
        raise NolbError(f"data.carve_fraction: must lie strictly between 0 and 1, got {fraction}")
    labels = np.asarray(labels, dtype=np.int64)
    per_class = {int(c): int(np.floor(n * fraction)) for c, n in zip(*np.unique(labels, return_counts=True))}
    return stratified_slice(labels, per_class, seed, "labelled split")


MISSING_TEST_RULES = ("carve", "error")


def fill_missing_test(samples: dict, origins: dict, missing_test: str, carve_seed: int, hint: str) -> dict:
    """Give a file dataset with validation but no test split a test split that is not its validation.

    ``missing_test="carve"`` (default) splits the labelled validation images per class, seeded:
    ``floor(n_c / 2)`` stay validation (selection), the rest become the reported test split,
    so the two never share an image; ``"error"`` stops with a one-line error saying how to
    provide a test split (``hint``).  ``samples`` (``{split: [(path, label), ...] | None}``) is
    updated in place.

    Returns:
        ``{split: one-line source}`` for every split (``origins[split]`` names where the
        split's images were found, e.g. ``"list val.txt"``).
    """
    if missing_test not in MISSING_TEST_RULES:
        raise NolbError(f"data.missing_test: unknown value {missing_test!r}; expected one of "
                        f"{', '.join(MISSING_TEST_RULES)}")
    for split in ("val", "test"):  # an empty folder or list counts as absent
        samples[split] = samples.get(split) or None
    if samples["val"] is None and samples["test"] is None:
        raise NolbError(f"no test split and no validation split to carve one from: {hint}")
    sources = {split: f"{len(samples[split]):,} images of {origins[split]}" if samples.get(split) else "none"
               for split in SPLIT_NAMES}
    if samples.get("test") is not None or samples.get("val") is None:
        return sources
    if missing_test == "error":
        raise NolbError(f"no test split: {hint}, or pass missing_test=carve to carve one from validation")
    labelled = samples["val"]
    keep, carved = carve_per_class([label for _, label in labelled], 0.5, carve_seed)
    samples["val"] = [labelled[i] for i in keep]
    samples["test"] = [labelled[i] for i in carved]
    whole = f"the {len(labelled):,} images of {origins['val']}"
    sources["val"] = (f"{len(keep):,} of {whole} (floor(n/2) per class, seed {carve_seed}); "
                      f"the other {len(carved):,} are the test split")
    sources["test"] = (f"{len(carved):,} of {whole} (carved per class, seed {carve_seed}, "
                       f"missing_test=carve); none of them is validation")
    return sources
