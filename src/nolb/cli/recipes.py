"""``nolb recipes [--verbose]``: the packaged recipes, one line each.

``--verbose`` adds the published base-method combinations (CIFAR-LT x IR x loss) as the
commands that run them.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recipes", help="list the packaged recipes (and the published combinations)",
                                   description="List the packaged recipes: dataset, model, loss, epochs, purpose.")
    parser.add_argument("--verbose", action="store_true", help="also the published combinations as commands")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nolb.recipes import PUBLISHED, packaged_recipes, published_overrides

    recipes = packaged_recipes()
    width = max(len(r.name) for r in recipes)
    for r in recipes:
        print(f"{r.name:<{width}}  {r.dataset:<16} {r.model:<16} {r.loss:<5} {r.epochs:>4} ep  {r.about}")
    if args.verbose:
        print(f"\npublished combinations ({len(PUBLISHED)} base methods x imbalance ratios; any recipe takes them):")
        for recipe, overrides in published_overrides():
            print(f"  nolb run {recipe} {' '.join(overrides)}")
    return 0
