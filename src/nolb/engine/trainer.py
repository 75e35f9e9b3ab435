"""Stage 1: train a base model on long-tailed data (``train(config) -> RunResult``).

Per epoch: set the sampler's and the loss's epoch (LDAM-DRW re-weights from its
``drw_epoch``), set the scheduled learning rate, train, evaluate on the *validation* split
every ``train.eval_every`` epochs (never on the test split), keep the best checkpoint by
validation ``train.select_metric`` (HM by default), save ``last``, log a JSON record.  At
the end the best checkpoint is evaluated once on the test split (``metrics.json``,
``per_class.csv``).  ``resume=True`` restores weights, optimizer, scaler, RNG states and the
epoch from ``checkpoints/last`` and continues exactly (bit-identical on the CPU in fp32).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nolb.config import Config, config_from_dict, validate
from nolb.engine import components as build
from nolb.engine.distributed import DistInfo, barrier, init_distributed, local_rank, sync_buffers
from nolb.engine.evaluate import evaluate
from nolb.engine.loop import NonFiniteLoss, train_one_epoch
from nolb.engine.precision import make_grad_scaler, resolve_precision
from nolb.engine.run_dir import RunDir
from nolb.engine.schedules import schedule_from_config
from nolb.engine.threads import apply_threads
from nolb.engine.special_steps import epoch_function
from nolb.engine.training_state import (
    merge_optimizer_state, rng_states, seed_everything, set_rng_states, split_optimizer_state,
)
from nolb.errors import NolbError
from nolb.models import unwrap_model
from nolb.models.checkpoint import load_state_into

SUMMARY_FIELDS = ("am", "gm", "hm", "lowest", "lowest_class", "num_zero", "accuracy", "many", "medium", "few")


@dataclass
class RunResult:
    """What :func:`train` produced.

    Attributes:
        run_dir: The run directory.
        epochs_completed: Epochs trained so far (all of them unless stopped early).
        best_epoch: 1-based epoch of the best validation score (None without validation).
        best_val: Validation summary at the best epoch.
        test: The test :class:`RecallReport` of the best checkpoint (None if not finished).
        history: The ``log.jsonl`` records.
        model: The trained model (best weights when finished), unwrapped.
    """

    run_dir: Path
    epochs_completed: int
    best_epoch: int | None
    best_val: dict | None
    test: Any
    history: list[dict] = field(default_factory=list)
    model: nn.Module | None = None


def report_summary(report: Any) -> dict:
    """The headline numbers of a RecallReport (means, lowest, zero count, groups)."""
    return {name: getattr(report, name) for name in SUMMARY_FIELDS if hasattr(report, name)}


def default_run_dir(config: Config) -> Path:
    return Path("runs") / f"{config.data.name}-{config.model.name}-{config.loss.name}-seed{config.train.seed}"


def train(
    config: Config,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    data: Any = None,
    stop_after_epoch: int | None = None,
    quiet: bool = False,
    command: list[str] | None = None,
) -> RunResult:
    """Train a base model as the config says and write its run directory.

    Args:
        config: The validated run config (``nolb.config.load_config``).
        run_dir: Output folder (default ``runs/<data>-<model>-<loss>-seed<seed>``).
        resume: Continue the run in ``run_dir`` from ``checkpoints/last``.
        overwrite: Replace an existing run directory.
        data: An ``LTData`` to use instead of ``build_data`` from the config.
        stop_after_epoch: Stop (as if interrupted) once this many epochs are done.
        quiet: No progress bars or per-epoch lines.
        command: The command line recorded in ``run.json`` (default ``sys.argv``).

    Returns:
        A :class:`RunResult`.

    Raises:
        NolbError: bad config or run directory, or a non-finite loss (naming epoch and step).
    """
    validate(config)
    with build.determinism(config.train.deterministic):
        return _train(config, run_dir=run_dir, resume=resume, overwrite=overwrite, data=data,
                      stop_after_epoch=stop_after_epoch, quiet=quiet, command=command)


def _train(config: Config, *, run_dir: str | Path | None, resume: bool, overwrite: bool, data: Any,
           stop_after_epoch: int | None, quiet: bool, command: list[str] | None) -> RunResult:
    t = config.train
    device = build.resolve_device(t.device, local_rank())
    dist_info = init_distributed(device)
    seed_everything(t.seed)
    run = RunDir(run_dir or default_run_dir(config), resume=resume, overwrite=overwrite, writer=dist_info.is_main)
    try:  # the run directory is locked until the run ends; a refused start removes what it made
        return _train_in(run, config, dist_info, device, resume=resume, data=data,
                         stop_after_epoch=stop_after_epoch, quiet=quiet, command=command)
    except BaseException:
        run.discard()
        raise
    finally:
        run.release()


def _train_in(run: RunDir, config: Config, dist_info: DistInfo, device: torch.device, *, resume: bool, data: Any,
              stop_after_epoch: int | None, quiet: bool, command: list[str] | None) -> RunResult:
    t = config.train
    threads = apply_threads(t.threads, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    resume = resume and run.has_checkpoint  # killed before its first checkpoint: start it over
    barrier()
    data = data if data is not None else build.build_data_from_config(config)
    model = build.build_model_from_config(config, data, initial_weights=not resume).to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build.build_loss_from_config(config, data).to(device)
    run_epoch = epoch_function(config, model, loss_fn, data, device) or train_one_epoch  # PaCo, DiVE: own step
    optimizer = build.build_optimizer(config, model)
    precision = resolve_precision(t.precision, device)
    scaler = make_grad_scaler(device, precision)
    schedule = schedule_from_config(config.optim, t.epochs)
    start_epoch, best, history, best_weights = 0, {"epoch": None, "score": None, "val": None}, [], None
    if resume:
        start_epoch, best, history = _restore(run, model, optimizer, scaler)
        if best["epoch"] is not None:
            best_weights = run.load_checkpoint("best")[1]
        run.record_resume(config, from_epoch=start_epoch, command=command if command is not None else sys.argv)
    train_loader, val_loader = build.build_loaders(config, data, device=device, rank=dist_info.rank,
                                                   world_size=dist_info.world_size)
    if not resume:  # written once every part of the run has been built (a refused start leaves nothing)
        run.write_config(config)
        run.write_run_info({**_run_info(config, dist_info, device, data, command), "threads": threads[0],
                            "precision": precision})
        _write_splits(run, data)
    net: nn.Module = model
    if dist_info.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        net = torch.compile(net)
    show = t.progress and not quiet and dist_info.is_main
    if dist_info.is_main and not quiet:
        print(f"stage 1: {config.data.name}, {config.model.name} + {config.loss.name}, {t.epochs} epochs on {device}, "
              f"{dist_info.world_size} process(es) x {threads[0]} CPU thread(s) ({threads[1]}), {precision}"
              f"{' (train.precision=auto)' if t.precision == 'auto' else ''}", file=sys.stderr, flush=True)
    tensorboard = _tensorboard(run, t.tensorboard and dist_info.is_main)
    for epoch in range(start_epoch, t.epochs):
        train_loader.set_epoch(epoch)
        if hasattr(loss_fn, "set_epoch"):
            loss_fn.set_epoch(epoch)
        lr = schedule.apply(optimizer, epoch)
        mixup_gen = torch.Generator().manual_seed(t.seed * 1_000_003 + epoch)
        try:
            stats = run_epoch(
                net, train_loader, loss_fn, optimizer, scaler, device=device, precision=precision,
                channels_last=t.channels_last, mixup_alpha=config.loss.mixup_alpha, mixup_generator=mixup_gen,
                max_steps=t.max_steps_per_epoch, progress=show, description=f"epoch {epoch + 1}/{t.epochs}",
            )
        except NonFiniteLoss as exc:
            kept = f"; the last good checkpoint is {run.checkpoint_dir / 'last.safetensors'}" if epoch > start_epoch or resume else ""
            raise NolbError(f"training stopped: {exc} of epoch {epoch + 1}{kept}") from None
        sync_buffers(model)
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": stats.loss, "steps": stats.steps,
                  "images_per_second": stats.images_per_second, "seconds": stats.seconds}
        if val_loader is not None and ((epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs):
            record["val"] = _validate(config, model, val_loader, data, device)
            score = float(record["val"][t.select_metric])
            if best["score"] is None or score > best["score"]:
                best = {"epoch": epoch + 1, "score": score, "val": record["val"]}
                best_weights = {k: v.detach().clone() for k, v in unwrap_model(model).state_dict().items()}
                run.save_checkpoint("best", best_weights, {"epoch": epoch + 1, "best": best})
        history.append(record)
        run.write_log(history)  # before the checkpoint: a resume drops records past its epoch
        _save_last(run, model, optimizer, scaler, schedule, epoch + 1, best)
        if tensorboard is not None:
            _log_tensorboard(tensorboard, record)
        if dist_info.is_main and not quiet:
            print(_epoch_line(record, t.epochs, t.select_metric), file=sys.stderr, flush=True)
        barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < t.epochs:
            return RunResult(run.path, epoch + 1, best["epoch"], best["val"], None, history, model)
    if best_weights is not None:
        model.load_state_dict(best_weights)
    test_report = _final_test(config, run, model, data, device, dist_info, best)
    if tensorboard is not None:
        tensorboard.close()
    return RunResult(run.path, t.epochs, best["epoch"], best["val"], test_report, history, model)


def _write_splits(run: RunDir, data: Any) -> None:
    """``splits.json``: the identities of the images that trained, selected and are reported."""
    splits = getattr(data, "splits", None)
    if run.writer and splits:
        from nolb.data.splits import write_splits

        write_splits(run.path / "splits.json", splits)


def _validate(config: Config, model: nn.Module, loader: Any, data: Any, device: torch.device) -> dict:
    """The validation summary (all ranks' images, each once) used for model selection.

    Many / Medium / Few group classes by their *training* counts (``data.class_counts``).
    """
    meter = evaluate(model, loader, data.num_classes, device=device,
                     precision=resolve_precision(config.train.precision, device),
                     channels_last=config.train.channels_last)
    return report_summary(meter.report(train_counts=data.class_counts.cpu().numpy()))


def _final_test(config: Config, run: RunDir, model: nn.Module, data: Any, device: torch.device,
                dist_info: DistInfo, best: dict) -> Any:
    """Evaluate ``model`` (already holding the best weights) once on the test split."""
    t = config.train
    loader = build.eval_loader(config, data, data.test, device=device, rank=dist_info.rank, world_size=dist_info.world_size)
    report = evaluate(model, loader, data.num_classes, device=device, precision=resolve_precision(t.precision, device),
                      channels_last=t.channels_last).report(train_counts=data.class_counts.cpu().numpy(),
                                                            class_names=list(data.class_names))
    run.write_metrics({
        "select_metric": t.select_metric,
        "best_epoch": best["epoch"],
        "epochs": t.epochs,
        "val": best["val"],
        "test": report_summary(report),
        "test_images": int(sum(report.test_counts)),
        "split_sources": dict(getattr(data, "splits", {}).get("sources", {})),
        "world_size": dist_info.world_size,
    })
    run.write_per_class(report)
    if t.plot:
        run.write_plot(report, title=f"{config.data.name}: {config.model.name} + {config.loss.name} (test)")
    barrier()
    return report


def _save_last(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, schedule: Any,
               epochs_done: int, best: dict) -> None:
    optim_json, optim_tensors = split_optimizer_state(optimizer)
    state = {"epoch": epochs_done, "sampler_epoch": epochs_done, "optimizer": optim_json, "scheduler": schedule.state_dict(),
             "scaler": scaler.state_dict(), "rng": rng_states(), "best": best, "saved_utc": time.time()}
    run.save_checkpoint("last", unwrap_model(model).state_dict(), state, optimizer_tensors=optim_tensors)


def _restore(run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any) -> tuple[int, dict, list]:
    state, weights, optim_tensors = run.load_checkpoint("last")
    load_state_into(model, weights, source=run.checkpoint_dir / "last.safetensors")  # another architecture: one line
    optimizer.load_state_dict(merge_optimizer_state(state["optimizer"], optim_tensors))
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_states(state["rng"])
    epoch = int(state["epoch"])
    history = [r for r in run.read_log() if r.get("epoch", 0) <= epoch]
    return epoch, state["best"], history


def _run_info(config: Config, dist_info: DistInfo, device: torch.device, data: Any, command: list[str] | None) -> dict:
    from nolb.provenance import environment, git_commit

    return {"seed": config.train.seed, "world_size": dist_info.world_size, "device": str(device),
            "git": git_commit(), "environment": environment(), "command": command if command is not None else sys.argv,
            "data": getattr(data, "info", {})}


def _epoch_line(record: dict, epochs: int, metric: str) -> str:
    line = (f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  lr {record['lr']:.4g}  "
            f"{record['images_per_second']:.0f} img/s")
    if "val" in record:
        v = record["val"]
        line += f"  val AM {100 * v['am']:.2f}  HM {100 * v['hm']:.2f}  lowest {100 * v['lowest']:.2f}"
        groups = [f"{100 * v[g]:.1f}" if v.get(g) is not None else "-" for g in ("many", "medium", "few")]
        line += f"  many/med/few {'/'.join(groups)} (by training counts)"
    return line


def _tensorboard(run: RunDir, wanted: bool) -> Any:
    if not wanted:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("nolb: warning: train.tensorboard=true but TensorBoard is not installed (pip install 'nolb[tensorboard]'); "
              "skipping it", file=sys.stderr)
        return None
    return SummaryWriter(str(run.path / "tensorboard"))


def _log_tensorboard(writer: Any, record: dict) -> None:
    step = record["epoch"]
    writer.add_scalar("train/loss", record["train_loss"], step)
    writer.add_scalar("train/lr", record["lr"], step)
    writer.add_scalar("train/images_per_second", record["images_per_second"], step)
    for name, value in record.get("val", {}).items():
        if isinstance(value, (int, float)) and value is not None:
            writer.add_scalar(f"val/{name}", value, step)


def config_of_run(run_dir: str | Path) -> Config:
    """The resolved config stored in a run directory."""
    config = config_from_dict(RunDir(run_dir, resume=True, writer=False).read_config_dict())
    validate(config)
    return config
