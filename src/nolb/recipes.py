"""The packaged recipes and the published combinations built from them by overrides.

One recipe per dataset/architecture lives in ``nolb/configs/``; the imbalance ratio and the
stage-1 loss are overrides (``nolb run cifar100_lt data.imbalance_ratio=50 loss.name=bsce``).
:data:`PUBLISHED` names the base-method combinations of the literature that the CIFAR-LT
recipes reproduce, as the overrides that make each one (``nolb recipes --verbose`` lists
them as commands; a test validates every one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nolb.config import PACKAGED_CONFIGS, load_config

IMBALANCE_RATIOS = (100, 50, 10)
PUBLISHED = {
    "ce": (),
    "bsce": ("loss.name=bsce",),
    "cb": ("loss.name=cb",),  # class-balanced CE, beta 0.9999 (the loss's default)
    "focal": ("loss.name=focal",),  # gamma 1 (the loss's default, as the LDAM-DRW code)
    "la": ("loss.name=la",),  # logit adjustment, tau 1 (the loss's default)
    "ldam_drw": ("loss.name=ldam_drw", "model.head=cosine", "loss.options.drw_epoch=160"),
    "mislas": ("loss.mixup_alpha=1.0",),  # MiSLAS stage 1: CE + mixup
}
PUBLISHED_RECIPES = ("cifar10_lt", "cifar100_lt")


@dataclass
class Recipe:
    """One packaged recipe: its name, what it trains and its first comment line."""

    name: str
    dataset: str
    model: str
    loss: str
    epochs: int
    about: str


def packaged_recipes() -> list[Recipe]:
    """Every packaged recipe, by name."""
    recipes = []
    for path in sorted(PACKAGED_CONFIGS.glob("*.yaml")):
        config = load_config(path)
        recipes.append(Recipe(path.stem, config.data.name, config.model.name, config.loss.name, config.train.epochs,
                              _first_comment(path)))
    return recipes


def published_overrides() -> list[tuple[str, list[str]]]:
    """``(recipe, overrides)`` of every published combination (recipe x IR x method)."""
    return [(recipe, [f"data.imbalance_ratio={ir}", *PUBLISHED[method]])
            for recipe in PUBLISHED_RECIPES for ir in IMBALANCE_RATIOS for method in PUBLISHED]


def _first_comment(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    text = " ".join(lines)
    first = text.split(". ")[0]
    return first if len(first) <= 90 else first[:87] + "..."
