"""The typed run configuration: YAML recipes, ``base:`` inheritance and ``key=value`` overrides.

A recipe is a YAML mapping with the sections of :class:`Config` (``data``, ``model``,
``loss``, ``optim``, ``train``, ``retrain``, ``ensemble``).  A top-level ``base:`` names
another recipe (a path relative to the file, or the name of a packaged recipe) whose values
this file overrides key by key, so a recipe only states what differs.  Command-line
overrides use dotted paths (``train.epochs=30``, ``optim.milestones=[20,25]``) and are
converted to the field's type.  Unknown keys are rejected with a close-match hint, and
invalid values (negative learning rate, zero epochs, imbalance ratio below 1, ...) with the
key's path; both as one-line :class:`NolbError` messages naming the file and line.

Learning rate and batch size are *global*: under DDP with N processes each rank takes
``batch_size / N`` images per step, so one recipe means the same run on 1 or N processes.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from nolb.errors import NolbError, did_you_mean
from nolb.limits import check_config_values
from nolb.yaml_io import load_yaml_file, parse_yaml_value
from nolb.config_stages import EnsembleConfig, RetrainConfig, check_stage_sections

PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
SCHEDULES = ("multistep", "cosine", "constant")
SELECT_METRICS = ("hm", "am", "gm", "lowest", "accuracy")


@dataclass
class DataConfig:
    """Which long-tailed dataset and how it is loaded (see ``nolb.data.build_data``)."""

    name: str = "digits_lt"
    root: str | None = None  # folder holding the dataset files (None: the dataset's default)
    imbalance_ratio: float | None = None  # n_max / n_min; None: the dataset's default
    options: dict = field(default_factory=dict)  # further build_data options, passed through
    sampler: str = "instance"  # instance | class_balanced | sqrt | progressive
    augment: str | None = None  # None: the preset's default training augmentation
    num_workers: int = 0


@dataclass
class ModelConfig:
    """The backbone, its head and optional initial weights (see ``nolb.models.build_model``)."""

    name: str = "resnet32"
    head: str = "linear"  # linear | cosine (LDAM-DRW)
    weights: str | None = None  # a local file; nothing is downloaded
    skip_classifier: bool = False  # with weights: load the backbone only
    options: dict = field(default_factory=dict)  # model-specific (width, trainable_blocks)


@dataclass
class LossConfig:
    """The stage-1 loss by name (see ``nolb.losses.build_loss``) and mixup."""

    name: str = "ce"
    options: dict = field(default_factory=dict)  # e.g. {drw_epoch: 160} for ldam, {tau: 1.0} for la
    mixup_alpha: float = 0.0  # > 0: mixup with Beta(alpha, alpha) (MiSLAS stage 1: 1.0 on CIFAR)


@dataclass
class OptimConfig:
    """SGD and its learning-rate schedule (global lr, whatever the number of processes)."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = False
    schedule: str = "multistep"  # multistep | cosine | constant
    warmup_epochs: int = 5  # linear warm-up from lr / warmup_epochs (LDAM-DRW)
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    gamma: float = 0.1
    min_lr: float = 0.0  # cosine floor


@dataclass
class TrainConfig:
    """The training loop."""

    epochs: int = 200
    batch_size: int = 128  # global batch, split evenly across processes
    eval_batch_size: int = 512
    precision: str = "fp32"  # fp32 | bf16 | fp16 (torch.autocast; GradScaler for fp16) | auto (bf16 where native)
    channels_last: bool = False
    compile: bool = False
    eval_every: int = 1  # evaluate on the validation split every this many epochs (and at the end)
    select_metric: str = "hm"  # validation metric choosing the best checkpoint
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = True  # torch.use_deterministic_algorithms (CPU runs are bit-reproducible)
    progress: bool = True  # tqdm bars (off when stderr is not a TTY)
    tensorboard: bool = False  # write TensorBoard events when tensorboard is installed
    plot: bool = True  # per_class_recall.png of the test report in the run directory
    max_steps_per_epoch: int | None = None  # cap steps per epoch (smoke runs)
    threads: str = "auto"  # CPU threads per process: auto (cores / local processes) | N; env NOLB_THREADS, OMP_NUM_THREADS win


@dataclass
class Config:
    """The whole run: stage 1 (data, model, loss, optim, train), stage 2 and stage 3."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)

    def to_dict(self) -> dict:
        """The resolved config as plain YAML-safe values."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike | None = None, overrides: Iterable[str] = ()) -> Config:
    """Read a recipe (with its ``base:`` chain), apply ``key=value`` overrides, validate.

    Args:
        path: A YAML file, or the name of a packaged recipe (``"digits_lt"``); None starts
            from the defaults.
        overrides: Dotted ``section.key=value`` strings; values are parsed as YAML and
            converted to the field's type.

    Returns:
        The validated :class:`Config`.

    Raises:
        NolbError: unknown key, wrong type or invalid value (names the file/line and key).
    """
    raw: dict = {}
    lines: dict[tuple, tuple[str, int]] = {}
    if path is not None:
        raw, lines = _read_with_bases(resolve_recipe(path), seen=())
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key.split("."), value)
        lines[tuple(key.split("."))] = (f"override {item!r}", 0)
    config = config_from_dict(raw, lines=lines)
    validate(config, lines=lines)
    return config


def apply_overrides(config: Config, overrides: Iterable[str]) -> Config:
    """A new validated config: ``config`` with dotted ``key=value`` overrides applied."""
    raw, lines = config.to_dict(), {}
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key.split("."), value)
        lines[tuple(key.split("."))] = (f"override {item!r}", 0)
    new = config_from_dict(raw, lines=lines)
    validate(new, lines=lines)
    return new


def resolve_recipe(path: str | os.PathLike, relative_to: Path | None = None) -> Path:
    """A recipe file: an existing path, else relative to ``relative_to``, else a packaged name."""
    candidates = [Path(path)]
    if relative_to is not None:
        candidates.insert(0, relative_to / path)
    name = str(path) if str(path).endswith((".yaml", ".yml")) else f"{path}.yaml"
    candidates.append(PACKAGED_CONFIGS / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    recipes = sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))
    raise NolbError(f"config file {path} not found (nor a packaged recipe of that name){did_you_mean(path, recipes)}")


def _read_with_bases(path: Path, seen: tuple) -> tuple[dict, dict]:
    if path in seen:
        raise NolbError(f"{path}: 'base:' chain loops back to this file")
    data, node = load_yaml_file(path)  # bounded, duplicate keys refused (nolb.yaml_io)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise NolbError(f"{path}: a config must be a YAML mapping of sections")
    lines = {key: (str(path), line) for key, line in _key_lines(node)}
    base = data.pop("base", None)
    if base is None:
        return data, lines
    if not isinstance(base, str):
        raise NolbError(f"{path}:{lines.get(('base',), ('', 0))[1]}: 'base:' must name a recipe file, got {base!r}")
    base_data, base_lines = _read_with_bases(resolve_recipe(base, relative_to=path.parent), seen + (path,))
    return _deep_merge(base_data, data), {**base_lines, **lines}


def _key_lines(node: Any, prefix: tuple = ()) -> Iterable[tuple[tuple, int]]:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (str(key_node.value),)
            yield key, key_node.start_mark.line + 1
            yield from _key_lines(value_node, key)


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise NolbError(f"override {item!r} is not of the form section.key=value")
    try:
        value = parse_yaml_value(text) if text.strip() else ""  # bounded (nolb.yaml_io)
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _set_dotted(raw: dict, parts: list[str], value: Any) -> None:
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise NolbError(f"override key {'.'.join(parts[: i + 1])!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _where(lines: dict, path: tuple) -> str:
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            source, line = lines[path[:n]]
            return f"{source}:{line}: " if line else f"{source}: "
    return ""


# ------------------------------------------------------------------ typed conversion


def config_from_dict(raw: dict, *, lines: dict | None = None) -> Config:
    """Build a :class:`Config` from nested dicts, checking every key and converting types."""
    return _build(Config, raw, (), lines or {})


def _build(cls: type, raw: Any, path: tuple, lines: dict) -> Any:
    where = _where(lines, path)
    if not isinstance(raw, dict):
        raise NolbError(f"{where}config section {'.'.join(path) or '<top>'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        key_path = path + (str(key),)
        if key not in names:
            dotted = ".".join(key_path)
            options = [".".join(path + (n,)) for n in names]
            close = difflib.get_close_matches(dotted, options, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(names)})"
            raise NolbError(f"{_where(lines, key_path)}unknown config key {dotted!r}{hint}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, key_path, lines)
        else:
            kwargs[key] = _convert(value, hint, key_path, lines)
    return cls(**kwargs)


def _convert(value: Any, hint: Any, path: tuple, lines: dict) -> Any:
    dotted = ".".join(path)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], path, lines)
    fail = NolbError(f"{_where(lines, path)}config key {dotted!r} expects {_type_name(hint)}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise fail
    if hint is int:
        if isinstance(value, bool):
            raise fail
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise fail
    if hint is float:
        if isinstance(value, bool):
            raise fail
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "1e-4" as a string
            except ValueError:
                raise fail from None
        raise fail
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise fail
    if origin is list or hint is list:
        if not isinstance(value, (list, tuple)):
            raise fail
        item = args[0] if args else None
        return [_convert(v, item, path, lines) if item else v for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise fail
        return dict(value)
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# ------------------------------------------------------------------------ validation


def validate(config: Config, *, lines: dict | None = None) -> None:
    """Reject values that cannot be right, naming the key (and file/line when known)."""
    lines = lines or {}
    check_config_values(config.to_dict(), lambda path: _where(lines, path))  # finite, bounded (nolb.limits)

    def check(ok: bool, key: str, problem: str) -> None:
        if not ok:
            value = config
            for part in key.split("."):
                value = getattr(value, part)
            raise NolbError(f"{_where(lines, tuple(key.split('.')))}config key {key!r} {problem}, got {value!r}")

    d, m, lo, o, t = config.data, config.model, config.loss, config.optim, config.train
    check(bool(d.name), "data.name", "must name a dataset")
    check(d.imbalance_ratio is None or d.imbalance_ratio >= 1, "data.imbalance_ratio", "must be >= 1")
    check(d.num_workers >= 0, "data.num_workers", "must be >= 0")
    check(bool(m.name), "model.name", "must name a model")
    check(m.head in ("linear", "cosine"), "model.head", "must be 'linear' or 'cosine'")
    check(lo.mixup_alpha >= 0, "loss.mixup_alpha", "must be >= 0")
    check(o.lr > 0, "optim.lr", "must be > 0")
    check(0 <= o.momentum < 1, "optim.momentum", "must be in [0, 1)")
    check(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    check(o.schedule in SCHEDULES, "optim.schedule", f"must be one of {', '.join(SCHEDULES)}")
    check(o.warmup_epochs >= 0, "optim.warmup_epochs", "must be >= 0")
    check(list(o.milestones) == sorted(o.milestones) and all(x > 0 for x in o.milestones),
          "optim.milestones", "must be increasing positive epochs")
    check(0 < o.gamma <= 1, "optim.gamma", "must be in (0, 1]")
    check(0 <= o.min_lr <= o.lr, "optim.min_lr", "must be in [0, optim.lr]")
    check(not (o.nesterov and o.momentum == 0), "optim.nesterov", "needs optim.momentum > 0")
    check(t.epochs >= 1, "train.epochs", "must be >= 1")
    check(t.batch_size >= 1, "train.batch_size", "must be >= 1")
    check(t.eval_batch_size >= 1, "train.eval_batch_size", "must be >= 1")
    check(t.precision in PRECISIONS, "train.precision", f"must be one of {', '.join(PRECISIONS)}")
    check(t.eval_every >= 1, "train.eval_every", "must be >= 1")
    check(t.select_metric in SELECT_METRICS, "train.select_metric", f"must be one of {', '.join(SELECT_METRICS)}")
    check(t.seed >= 0, "train.seed", "must be >= 0")
    check(t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"), "train.device",
          "must be auto, cpu, cuda or cuda:N")
    check(t.max_steps_per_epoch is None or t.max_steps_per_epoch >= 1, "train.max_steps_per_epoch", "must be >= 1")
    _check_names(config, lines)
    from nolb.losses import loss_options

    check_stage_sections(config.retrain, config.ensemble, check, loss_options("gml"))
    _check_gml_options(config, lines)


def _check_gml_options(config: Config, lines: dict) -> None:
    """The values of ``retrain.loss_options`` are checked by building the GML loss once."""
    from nolb.losses import build_loss

    try:
        build_loss("gml", [2, 1], prior_strength=config.retrain.prior_strength, **config.retrain.loss_options)
    except (NolbError, TypeError, ValueError) as exc:
        where = _where(lines, ("retrain", "loss_options"))
        raise NolbError(f"{where}config key 'retrain.loss_options': {str(exc).splitlines()[0]}") from None


def _sampler_names() -> tuple:
    from nolb.data import SAMPLER_NAMES

    return tuple(SAMPLER_NAMES)


def _check_names(config: Config, lines: dict) -> None:
    """Names and pass-through options checked against the packages that define them."""
    from nolb.data import DATASET_NAMES, dataset_options
    from nolb.losses import LOSS_NAMES, loss_options
    from nolb.models.registry import model_names_for

    for key, value, names in (("model.name", config.model.name, model_names_for(config.model.name)),
                              ("loss.name", config.loss.name, tuple(LOSS_NAMES)),
                              ("data.name", config.data.name, tuple(DATASET_NAMES)),
                              ("data.sampler", config.data.sampler, _sampler_names())):
        if value not in names:
            close = difflib.get_close_matches(value, names, n=1)
            hint = (f" (did you mean {close[0]!r}? valid: {', '.join(names)})" if close
                    else f" (one of {', '.join(names)})")
            raise NolbError(f"{_where(lines, tuple(key.split('.')))}config key {key!r}: unknown name {value!r}{hint}")
    data_given = {f"data.options.{k}" for k in config.data.options}
    data_given |= {f"data.{k}" for k in ("root", "imbalance_ratio") if getattr(config.data, k) is not None}
    checks = ((data_given, dataset_options(config.data.name)),
              ({f"loss.options.{k}" for k in config.loss.options}, loss_options(config.loss.name)))
    for given, accepted in checks:
        for key in sorted(given):
            option = key.rsplit(".", 1)[1]
            if option in accepted:
                continue
            close = difflib.get_close_matches(option, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (accepted: {', '.join(accepted) or 'none'})"
            raise NolbError(f"{_where(lines, tuple(key.split('.')))}config key {key!r} is not an option here{hint}")
