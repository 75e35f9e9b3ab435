"""The published class-count profiles of the list-file benchmarks, for ``nolb data info NAME``
without ``--root`` (the images are not needed to know a benchmark's shape).

Train/val/test sizes, classes and the largest/smallest class are those of the OLTR split
lists (Liu et al., CVPR 2019; iNaturalist 2018: Kang et al., ICLR 2020, which reports on
the official validation list).  Group sizes (Many > 100, Few < 20 training images) are
given only where they were counted from the training list itself: Places-LT, from
``Places_LT_train.txt`` of facebookresearch/classifier-balancing at commit f162adef
(``../shared/data/splits``).  Pass ``--lists-dir`` (or ``--root``) to count any of them.
"""

from __future__ import annotations

PUBLISHED_PROFILES = {
    "imagenet_lt": {"classes": 1000, "train": 115_846, "val": 20_000, "test": 50_000, "max": 1280, "min": 5,
                    "groups": None},
    "places_lt": {"classes": 365, "train": 62_500, "val": 7_300, "test": 36_500, "max": 4980, "min": 5,
                  "groups": (131, 163, 71)},
    "inat2018": {"classes": 8142, "train": 437_513, "val": 0, "test": 24_426, "max": 1000, "min": 2,
                 "groups": None},
}


def print_published_profile(name: str) -> int:
    """Print ``name``'s published profile in ``nolb data info``'s layout."""
    p = PUBLISHED_PROFILES[name]
    print(f"dataset          {name} (published split lists; no --root given, no image read)")
    print(f"classes          {p['classes']}")
    print(f"images           train {p['train']}, val {p['val']}, test {p['test']}")
    print(f"max / min        {p['max']} / {p['min']}")
    print(f"imbalance ratio  {p['max'] / p['min']:.2f}")
    if p["groups"]:
        many, medium, few = p["groups"]
        print(f"many/medium/few  {many} / {medium} / {few}  (Many > 100, Few < 20 training images)")
    else:
        print("many/medium/few  pass --lists-dir FOLDER (the split lists) to count them")
    return 0
