"""``nolb retrain RUN_DIR_OR_CHECKPOINT [options]``: stage 2, a new classifier on a frozen backbone.

From a nolb run directory, or from any checkpoint with ``--model NAME --weights FILE
--classifier ATTR --data CONFIG``.  Writes ``head.safetensors``,
``retrain.json`` and ``report/`` (original head vs new head on the test split) to ``--out``
(default ``RUN_DIR/retrain/<method>``); features are cached in ``RUN_DIR/retrain/features``
(or ``OUT/features``) and reused while the backbone, data and views are unchanged.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from nolb.errors import NolbError
from nolb.retrain.config import HEAD_INITS, HEAD_SAMPLERS, RETRAIN_METHODS, RETRAIN_MODES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retrain", help="stage 2: re-train the classifier (GML, BSCE, CE, cRT, LWS, tau-norm) on a frozen backbone",
        description="Freeze the backbone of a trained model and train a new linear classifier.",
    )
    parser.add_argument("target", nargs="?", metavar="RUN_DIR_OR_CHECKPOINT", help="a nolb run directory or a weights file")
    parser.add_argument("--method", choices=RETRAIN_METHODS, default="gml")
    parser.add_argument("--mode", choices=RETRAIN_MODES, default="cached",
                        help="cached: features of --views augmented passes computed once; online: fresh every epoch")
    parser.add_argument("--views", type=int, default=4, help="augmented views of the training set (cached mode)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, help="peak lr of the cosine schedule (default: 0.02, ImageNet-like 0.005)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--prior-strength", type=float, default=1.0, help="GML's tau in softmax(z + tau log n)")
    parser.add_argument("--sampler", choices=HEAD_SAMPLERS, help="default: the method's own")
    parser.add_argument("--init", choices=HEAD_INITS, default="original")
    parser.add_argument("--select-on-val", action="store_true", help="choose GML's tau, lr, sampler, epoch on validation")
    parser.add_argument("--matmul-dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: faster head matmuls on AMX / AVX-512-BF16 CPUs (loss and weights stay fp32)")
    parser.add_argument("--shift-bn", action="store_true", help="re-estimate BatchNorm statistics first (MiSLAS)")
    parser.add_argument("--model", help="architecture of a checkpoint file (nolb or torchvision name)")
    parser.add_argument("--weights", help="the checkpoint file (instead of RUN_DIR_OR_CHECKPOINT)")
    parser.add_argument("--classifier", help="attribute of the final layer (default: classifier; torchvision: fc)")
    parser.add_argument("--data", metavar="CONFIG", help="data recipe for a checkpoint file")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/retrain)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (cached features are kept)")
    # --- feature-file mode (issue 17, nolb.cli.retrain_features) ---
    from nolb.cli.retrain_features import add_feature_arguments

    add_feature_arguments(parser)
    # --- end feature-file mode ---
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "features", None):  # feature-file mode (issue 17)
        from nolb.cli.retrain_features import run_features

        return run_features(args)
    from nolb.retrain.api import recipe_defaults, train_on_source
    from nolb.retrain.feature_source import FeatureSource
    from nolb.retrain.head_methods import HeadSettings, baseline_settings
    from nolb.retrain.model_loading import load_run_or_checkpoint
    from nolb.retrain.report import reports_from_scores, write_report
    from nolb.retrain.scoring import head_logits
    from nolb.io import save_safetensors, write_json

    target = args.target or args.weights
    if not target:
        raise NolbError("nolb retrain needs a RUN_DIR or a checkpoint (positional or --weights)")
    loaded = load_run_or_checkpoint(target, model_name=args.model, data_config=args.data, classifier=args.classifier)
    if args.out:
        out, feature_dir = Path(args.out), Path(args.out) / "features"
    elif loaded.run_dir is not None:  # share the run's feature cache with `nolb run` / `nolb ensemble`
        out, feature_dir = loaded.run_dir / "retrain" / args.method, loaded.run_dir / "retrain" / "features"
    else:
        out = Path(f"retrain-{Path(target).stem}") / args.method
        feature_dir = out.parent / "features"
    record_path = out / "retrain.json"
    if record_path.exists() and not args.overwrite:
        raise NolbError(f"{record_path}: exists; pass --overwrite to replace it (cached features are reused)")
    defaults = recipe_defaults(loaded.data.preset)
    settings = HeadSettings(
        method=args.method, prior_strength=args.prior_strength, epochs=args.epochs, init=args.init, seed=args.seed,
        matmul_dtype=args.matmul_dtype,
        lr=args.lr if args.lr is not None else defaults["lr"], batch_size=args.batch_size if args.batch_size is not None else defaults["batch_size"],
        weight_decay=args.weight_decay if args.weight_decay is not None else defaults["weight_decay"],
    )
    if args.method in ("crt", "lws", "tau_norm"):
        settings = baseline_settings(args.method, settings)
    if args.sampler:
        settings = replace(settings, sampler=args.sampler)
    source = FeatureSource(loaded.model, loaded.data, classifier=loaded.classifier,
                           views=args.views if args.mode == "cached" else 1, cache_dir=feature_dir,
                           device=args.device, seed=args.seed, shift_bn=args.shift_bn)
    trained = train_on_source(source, settings, mode=args.mode, select_on_val=args.select_on_val)
    head_path = out / "head.safetensors"
    save_safetensors(head_path, {"weight": trained.head.weight, "bias": trained.head.bias},
                     metadata={"settings": str(trained.settings.to_dict())})
    test = source.split("test")
    rows = reports_from_scores({"original head": head_logits(source.original_head, test.features),
                                f"{args.method} head": head_logits(trained.head, test.features)},
                               test.labels, source.num_classes, train_counts=source.class_counts.numpy())
    files = write_report(rows, out / "report", title=f"stage 2: {args.method} ({args.mode})")
    write_json(record_path, {"head": str(head_path), "mode": args.mode, "architecture": loaded.architecture,
                             **trained.describe()})  # last: its presence means "finished"
    print(files.table)
    print(f"new head: {head_path}")
    print(f"report:   {files.markdown}  plot: {files.plot}")
    return 0
