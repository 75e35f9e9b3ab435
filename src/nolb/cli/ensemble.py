"""``nolb ensemble RUN_DIR [--head FILE] [--t1 T --t2 T | --select-temperatures] [--space prob|log]``.

Stage 3: the original head and a stage-2 head on one backbone pass,
``p = (softmax(z1/T1) + softmax(z2/T2)) / 2``.  Temperatures are fixed or chosen on the
validation split (never the test split).  Saves ``ensemble.safetensors`` + ``.json`` (one
model file) and a report comparing the two heads with the probability- and log-space
ensembles.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nolb.errors import NolbError
from nolb.retrain.config import ENSEMBLE_SPACES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ensemble", help="stage 3: ensemble the original and the re-trained classifier",
        description="Combine the original head and a stage-2 head of a run into one model.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a nolb run directory (stage 2 done)")
    parser.add_argument("--head", metavar="FILE", help="stage-2 head (default RUN_DIR/retrain/heads/nolb.safetensors, "
                                                        "else .../paper.safetensors)")
    parser.add_argument("--t1", type=float, default=1.0, help="temperature of the original head")
    parser.add_argument("--t2", type=float, default=1.0, help="temperature of the new head")
    parser.add_argument("--select-temperatures", action="store_true", help="choose (T1, T2) on the validation split")
    parser.add_argument("--grid", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--space", choices=ENSEMBLE_SPACES, default="prob")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/ensemble)")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    from nolb.io import load_safetensors
    from nolb.retrain.config import EnsembleConfig
    from nolb.retrain.ensemble import ensemble_log_probs
    from nolb.retrain.ensemble_io import save_ensemble
    from nolb.retrain.feature_source import FeatureSource
    from nolb.retrain.model_loading import load_run_or_checkpoint
    from nolb.retrain.report import reports_from_scores, write_report
    from nolb.retrain.scoring import head_logits
    from nolb.retrain.stages import run_stage3

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise NolbError(f"{run_dir}: no such run directory")
    head_path = Path(args.head) if args.head else _default_head(run_dir)
    out = Path(args.out) if args.out else run_dir / "ensemble"
    if (out / "ensemble.json").exists() and not args.overwrite:
        raise NolbError(f"{out / 'ensemble.json'}: exists; pass --overwrite to replace it")
    loaded = load_run_or_checkpoint(run_dir)
    config = loaded.config
    tensors, _ = load_safetensors(head_path)
    if set(tensors) != {"weight", "bias"}:
        raise NolbError(f"{head_path}: not a stage-2 head (expected tensors 'weight' and 'bias', found {sorted(tensors)})")
    new_head = nn.Linear(tensors["weight"].shape[1], tensors["weight"].shape[0])
    new_head.load_state_dict(tensors)
    source = FeatureSource(loaded.model, loaded.data, views=config.retrain.views,
                           cache_dir=run_dir / "retrain" / "features", device=args.device, seed=config.retrain.seed,
                           shift_bn=config.retrain.shift_bn)
    expected = tuple(source.original_head.weight.shape)
    if tuple(new_head.weight.shape) != expected:
        raise NolbError(f"{head_path}: head of shape {tuple(new_head.weight.shape)} (classes, features) does not fit "
                        f"the run's model, which needs {expected}")
    ens_config = EnsembleConfig(t1=args.t1, t2=args.t2, select_temperatures=args.select_temperatures,
                                temperature_grid=list(args.grid), space=args.space)
    ensemble, choice = run_stage3(source, new_head, ens_config)
    description = save_ensemble(out / "ensemble.safetensors", ensemble, loaded.architecture, overwrite=args.overwrite)
    test = source.split("test")
    with torch.no_grad():
        z1, z2 = head_logits(source.original_head, test.features), head_logits(new_head, test.features)
        other = "log" if ensemble.space == "prob" else "prob"
        scores = {"original head": z1, "new head": z2, f"ensemble ({ensemble.space})": ensemble.forward_heads(test.features.float()),
                  f"ensemble ({other})": ensemble_log_probs(z1, z2, ensemble.t1, ensemble.t2, other)}
    rows = reports_from_scores(scores, test.labels, source.num_classes, train_counts=source.class_counts.numpy())
    how = f"chosen on validation from {list(args.grid)}" if choice else "fixed"
    files = write_report(rows, out / "report", title=f"stage 3 ensemble of {run_dir.name}",
                         notes=[f"T1 {ensemble.t1}, T2 {ensemble.t2} ({how})", f"new head: {head_path}"])
    print(files.table)
    print(f"ensemble model: {out / 'ensemble.safetensors'} (description {description})")
    print(f"report: {files.markdown}  plot: {files.plot}")
    from nolb.deploy import package_run  # i15: the final model as one self-describing file + model card
    print(f"final model: {package_run(run_dir)} (+ MODEL_CARD.md)")
    if source.has("val"):  # issue 20 hook (i20): (T1, T2) map + calibration plots into the ensemble folder
        from nolb.retrain.pipeline import write_ensemble_plots

        write_ensemble_plots(source, ensemble, ens_config, out)
    return 0


def _default_head(run_dir: Path) -> Path:
    for name in ("nolb", "paper"):
        path = run_dir / "retrain" / "heads" / f"{name}.safetensors"
        if path.is_file():
            return path
    raise NolbError(f"{run_dir}: no stage-2 head under retrain/heads/; run 'nolb retrain' or pass --head FILE")
