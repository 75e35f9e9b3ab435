"""``nolb data info NAME [options] [--plot OUT.png] [--splits FILE]``: a dataset's profile and splits.

Prints classes, split sizes, where each split's images come from (training / validation /
reported test never share an image), the largest and smallest class, the imbalance ratio
and the Many / Medium / Few group sizes (Many > 100, Few < 20 training images by default);
optionally plots the per-class training counts (sorted, log scale) to a PNG and writes the
image identities of every split to ``splits.json`` (the file every run directory keeps).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from nolb.errors import NolbError

# CLI flag -> build_data option (only flags the user sets are passed on).
_FLAG_OPTIONS = ("root", "imbalance_ratio", "profile", "val_per_class", "seed", "lists_dir",
                 "train_list", "val_list", "test_list", "relabel_by_frequency", "num_classes", "val_source",
                 "missing_test")


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="inspect datasets (class-count profiles)")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    info = actions.add_parser("info", help="print (and plot) a dataset's class-count profile")
    info.add_argument("name", help="dataset name (cifar10_lt, digits_lt, places_lt, list_file, ...)")
    info.add_argument("--root", help="dataset root folder")
    info.add_argument("--imbalance-ratio", type=float, help="n_max / n_min of the training profile")
    info.add_argument("--profile", choices=("exp", "step"), help="long-tailed profile")
    info.add_argument("--val-per-class", type=int, help="validation images per class")
    info.add_argument("--val-source", choices=("auto", "test", "borrow_train"),
                      help="array datasets: where validation comes from (default auto: unused training "
                           "images, else a slice of the official test set)")
    info.add_argument("--missing-test", choices=("carve", "error"),
                      help="file datasets without a test split: carve one from validation (default) or stop")
    info.add_argument("--seed", type=int, help="subsample seed")
    info.add_argument("--lists-dir", help="folder with the benchmark list files")
    info.add_argument("--train-list", help="training list file")
    info.add_argument("--val-list", help="validation list file")
    info.add_argument("--test-list", help="test list file")
    info.add_argument("--num-classes", type=int, help="number of classes of a custom list")
    info.add_argument("--relabel-by-frequency", action="store_true", default=None,
                      help="renumber classes by descending training count")
    info.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="any other build_data option (repeatable)")
    info.add_argument("--many-threshold", type=int, default=100, help="Many: more than this many images")
    info.add_argument("--few-threshold", type=int, default=20, help="Few: fewer than this many images")
    info.add_argument("--plot", metavar="OUT.png", help="write a plot of the per-class counts")
    info.add_argument("--splits", metavar="FILE", help="write the image identities of every split (splits.json)")
    info.add_argument("--force", action="store_true", help="overwrite an existing plot or splits file")
    info.set_defaults(func=_info)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _parse_options(args: argparse.Namespace) -> dict:
    import yaml

    options = {key: getattr(args, key) for key in _FLAG_OPTIONS if getattr(args, key) is not None}
    for item in args.option:
        if "=" not in item:
            raise NolbError(f"--option {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        options[key.strip()] = yaml.safe_load(value)
    return options


def profile_summary(counts, many_threshold: int = 100, few_threshold: int = 20) -> dict:
    """Classes, images, max, min, imbalance ratio and group sizes of per-class counts."""
    from nolb.data.profiles import group_sizes

    counts = [int(c) for c in counts]
    return {"classes": len(counts), "images": sum(counts), "max": max(counts), "min": min(counts),
            "imbalance_ratio": max(counts) / min(counts) if min(counts) > 0 else float("inf"),
            **group_sizes(counts, many_threshold, few_threshold)}


def plot_counts(counts, path: Path, title: str, many_threshold: int, few_threshold: int) -> None:
    """Bar plot of per-class training counts, largest first (log scale), written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nolb.io import write_bytes

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.bar(range(len(counts)), sorted(counts, reverse=True), width=1.0, color="#4C72B0")
    ax.set_yscale("log")
    ax.axhline(many_threshold, color="#C44E52", ls="--", lw=1, label=f"Many > {many_threshold}")
    ax.axhline(few_threshold, color="#55A868", ls="--", lw=1, label=f"Few < {few_threshold}")
    ax.set_xlabel("classes sorted by training count")
    ax.set_ylabel("training images")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def _info(args: argparse.Namespace) -> int:
    from nolb.data import build_data

    from nolb.cli.data_published import PUBLISHED_PROFILES, print_published_profile

    if args.name in PUBLISHED_PROFILES and not (args.root or args.lists_dir or args.train_list or args.plot
                                           or getattr(args, "splits", None)):
        return print_published_profile(args.name)  # the benchmark's shape needs no image folder

    from nolb.data.splits import write_splits

    plot = Path(args.plot) if args.plot else None
    splits_file = Path(args.splits) if args.splits else None
    for out in (plot, splits_file):
        if out is not None and out.exists() and not args.force:
            raise NolbError(f"{out}: already exists (pass --force to overwrite)")
    data = build_data(args.name, **_parse_options(args))
    counts = data.class_counts.tolist()
    s = profile_summary(counts, args.many_threshold, args.few_threshold)
    sizes = data.info["sizes"]
    print(f"dataset          {args.name}")
    print(f"classes          {s['classes']}")
    print(f"images           train {sizes['train']}, val {sizes['val']}, test {sizes['test']}")
    for split in ("train", "val", "test"):
        print(f"{split + ' from':<17}{data.splits['sources'].get(split, 'n/a')}")
    print(f"max / min        {s['max']} / {s['min']}")
    print(f"imbalance ratio  {s['imbalance_ratio']:.2f}")
    print(f"many/medium/few  {s['many']} / {s['medium']} / {s['few']}  "
          f"(Many > {args.many_threshold}, Few < {args.few_threshold} training images)")
    if plot is not None:
        plot_counts(counts, plot, f"{args.name}: {s['images']} images, IR {s['imbalance_ratio']:.1f}",
                    args.many_threshold, args.few_threshold)
        print(f"plot             {plot}")
    if splits_file is not None:
        write_splits(splits_file, data.splits)
        print(f"splits           {splits_file}")
    return 0
