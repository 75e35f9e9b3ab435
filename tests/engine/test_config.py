"""The typed config: recipes, ``base:`` inheritance, overrides, and one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from nolb.config import Config, PACKAGED_CONFIGS, apply_overrides, config_from_dict, load_config
from nolb.errors import NolbError
from nolb.recipes import PUBLISHED, published_overrides

RECIPES = sorted(PACKAGED_CONFIGS.glob("*.yaml"))


def write(path: Path, data: dict | str) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def test_base_inheritance_and_typed_overrides(tmp_path):
    write(tmp_path / "parent.yaml", {"train": {"epochs": 7, "batch_size": 16}, "optim": {"lr": 0.3}})
    child = write(tmp_path / "child.yaml", {"base": "parent.yaml", "train": {"epochs": 9}})
    config = load_config(child, ["optim.lr=1e-3", "optim.milestones=[2, 4]", "train.precision=bf16",
                                 "train.channels_last=true", "loss.name=la", "loss.options.tau=0.5",
                                 "data.root=none"])
    assert (config.train.epochs, config.train.batch_size) == (9, 16)  # child wins, parent fills in
    assert config.optim.lr == pytest.approx(1e-3) and isinstance(config.optim.lr, float)
    assert config.optim.milestones == [2, 4]
    assert config.train.channels_last is True and config.train.precision == "bf16"
    assert config.loss.options == {"tau": 0.5} and config.data.root is None
    assert config.train.seed == Config().train.seed  # untouched defaults


def test_to_dict_round_trips():
    config = load_config("cifar10_lt", ["data.imbalance_ratio=50", *PUBLISHED["ldam_drw"]])
    assert config.data.imbalance_ratio == 50 and config.model.head == "cosine"
    assert config_from_dict(yaml.safe_load(config.to_yaml())) == config
    assert set(config.to_dict()) == {"data", "model", "loss", "optim", "train", "retrain", "ensemble"}


def test_unknown_key_names_file_line_and_close_match(tmp_path):
    path = write(tmp_path / "bad.yaml", "train:\n  epochs: 3\n  bacth_size: 4\n")
    with pytest.raises(NolbError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{path.resolve()}:3:" in message and "'train.bacth_size'" in message
    assert "did you mean 'train.batch_size'" in message and "\n" not in message
    with pytest.raises(NolbError, match="unknown config key 'optimizer'"):
        load_config(None, ["optimizer.lr=0.1"])
    with pytest.raises(NolbError, match=r"'retrain.epoch'.*did you mean 'retrain.epochs'"):
        load_config(None, ["retrain.epoch=3"])


@pytest.mark.parametrize("override, key", [
    ("optim.lr=-0.1", "optim.lr"),
    ("data.imbalance_ratio=0.5", "data.imbalance_ratio"),
    ("train.epochs=0", "train.epochs"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.precision=fp8", "train.precision"),
    ("train.select_metric=top5", "train.select_metric"),
    ("optim.milestones=[180, 160]", "optim.milestones"),
    ("train.epochs=ten", "train.epochs"),
    ("train.compile=maybe", "train.compile"),
    ("model.name=resnet33", "model.name"),
    ("loss.name=ldam_drv", "loss.name"),
    ("loss.options.gama=2", "loss.options.gama"),
    ("ensemble.t1=0", "ensemble.t1"),
])
def test_invalid_values_give_one_line_error_naming_the_key(override, key):
    with pytest.raises(NolbError) as err:
        load_config(None, [override])
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)


def test_apply_overrides_validates():
    config = apply_overrides(Config(), ["train.epochs=3"])
    assert config.train.epochs == 3
    with pytest.raises(NolbError, match="'train.epochs'"):
        apply_overrides(config, ["train.epochs=-1"])


def test_base_cycle_and_missing_file(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(NolbError, match="loops"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(NolbError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_is_valid(recipe):
    from nolb.losses import build_loss

    from nolb.models import build_model
    from nolb.retrain.heads import trainable_head
    from nolb.retrain.settings import HeadSettings

    config = load_config(recipe)
    counts = torch.tensor([50, 20, 5])
    build_loss(config.loss.name, counts, **config.loss.options)  # options accepted by the loss
    with torch.device("meta"):  # dry construction: shapes only, no weights file, no data
        model = build_model(config.model.name, 3, head=config.model.head, **config.model.options)
    assert model.feature_dim > 0
    settings = HeadSettings.from_config(config.retrain)  # the stage-2 head of the recipe
    module, loss = trainable_head(settings, torch.nn.Linear(4, 3), 4, counts)
    assert module(torch.randn(2, 4)).shape == (2, 3) and torch.isfinite(loss(module(torch.randn(2, 4)), torch.tensor([0, 2])))
    if config.data.name in ("imagenet_lt", "places_lt", "inat2018"):  # METHOD.md section 4
        assert (settings.lr, settings.batch_size, settings.weight_decay) == (0.005, 256, 5e-4)
    if config.loss.name == "ldam_drw":
        assert config.model.head == "cosine"


def test_recipe_family_is_complete():
    names = {p.stem for p in RECIPES}
    assert {"cifar10_lt", "cifar100_lt", "digits_lt", "fashion_mnist_lt", "imagenet_lt_resnet50",
            "imagenet_lt_resnext50", "places_lt", "inat2018", "cifar10_lt_cpu"} <= names
    assert not any("_ir" in name for name in names)  # IR and loss are overrides, not copies
    combos = published_overrides()
    assert len(combos) == 2 * 3 * 7
    for recipe, overrides in combos:  # every published combination is a valid config
        config = load_config(recipe, overrides)
        assert config.data.imbalance_ratio == float(overrides[0].split("=")[1])
        if config.loss.name == "ldam_drw":
            assert config.model.head == "cosine"
    cifar = load_config("cifar10_lt")
    assert (cifar.train.epochs, cifar.train.batch_size, cifar.optim.lr, cifar.optim.warmup_epochs,
            cifar.optim.milestones, cifar.optim.weight_decay) == (200, 128, 0.1, 5, [160, 180], 2e-4)
    assert load_config("cifar10_lt", PUBLISHED["mislas"]).loss.mixup_alpha == 1.0


@pytest.mark.parametrize("override, key", [
    ("retrain.method=bogus", "retrain.method"), ("ensemble.t1=-1", "ensemble.t1"),
    ("retrain.baselines=[crt,nope]", "retrain.baselines"), ("ensemble.head=nope", "ensemble.head"),
    ("retrain.loss_options.aggregate=nope", "retrain.loss_options"),
    ("retrain.mode=online", "retrain.mode"),  # online with the default select_on_val cannot apply
])
def test_stage_keys_are_validated_with_the_whole_config(override, key):
    with pytest.raises(NolbError) as err:
        load_config("digits_lt", [override])
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)


def test_config_module_imports_nothing_above_it():
    import ast

    for module in ("config.py", "config_stages.py"):
        tree = ast.parse((PACKAGED_CONFIGS.parent / module).read_text())
        names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [n for n in names if n.startswith(("nolb.retrain", "nolb.engine", "nolb.cli"))], module
