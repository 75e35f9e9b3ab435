"""Many / Medium / Few: classes grouped by their number of training images.

The OLTR / decoupling convention: with training count ``n_c``,

* Many   ``n_c >  many_threshold``               (default: more than 100 images);
* Medium ``few_threshold <= n_c <= many_threshold`` (default: 20 to 100, inclusive);
* Few    ``n_c <  few_threshold``                (default: fewer than 20).

A group's score is the mean recall of its classes; a group with no class has no score
(``None``, shown as "n/a"), never 0.  Some codebases (MiSLAS) use fixed class-index ranges
instead; :func:`group_rule` states the rule a report used.
"""

from __future__ import annotations

import numpy as np

from nolb.errors import NolbError

GROUP_NAMES = ("many", "medium", "few")


def check_thresholds(many_threshold: float, few_threshold: float) -> None:
    """Raise NolbError unless ``0 <= few_threshold <= many_threshold + 1`` (finite numbers)."""
    for name, value in (("many_threshold", many_threshold), ("few_threshold", few_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
            raise NolbError(f"{name} must be a finite number, got {value!r}")
    if few_threshold < 0 or few_threshold > many_threshold + 1:
        raise NolbError(
            f"few_threshold ({few_threshold}) must lie in [0, many_threshold + 1] (many_threshold={many_threshold})"
        )


def group_masks(train_counts: np.ndarray, many_threshold: float, few_threshold: float) -> dict[str, np.ndarray]:
    """Boolean class masks for the three groups (they partition the classes).

    Args:
        train_counts: (C,) training images per class.
        many_threshold: classes with more images than this are Many.
        few_threshold: classes with fewer images than this are Few.

    Returns:
        ``{"many": mask, "medium": mask, "few": mask}``, each of shape (C,).
    """
    counts = np.asarray(train_counts)
    many = counts > many_threshold
    few = counts < few_threshold
    return {"many": many, "medium": ~many & ~few, "few": few}


def group_rule(many_threshold: float, few_threshold: float) -> str:
    """A one-line statement of the grouping rule, e.g. for a table caption."""
    return (
        f"Many: > {many_threshold:g} training images, Medium: {few_threshold:g}-{many_threshold:g} "
        f"(inclusive), Few: < {few_threshold:g}"
    )
