"""What defines one stage-2 head, built in one place from the ``retrain`` config section.

:class:`HeadSettings` is the only settings type of stage 2: the Python API, ``nolb
retrain`` and ``nolb run`` all build it with :meth:`HeadSettings.from_config` from a
:class:`~nolb.config_stages.RetrainConfig` (whose defaults are the CIFAR recipe, and whose
per-dataset values come from the dataset's YAML recipe, see :func:`stage2_recipe`).  The
decoupling baselines are the same settings with their classic sampler and initialisation
(:func:`baseline_settings`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from nolb.config_stages import BASELINE_METHODS, RetrainConfig
from nolb.errors import NolbError

PRESET_RECIPES = {"imagenet": "imagenet_lt_resnet50"}  # data preset -> recipe holding its stage-2 values


@dataclass(frozen=True)
class HeadSettings:
    """Everything that defines one stage-2 head (recorded with it).

    ``method``: gml | bsce | ce | crt | lws | tau_norm.  ``prior_strength`` and
    ``loss_options`` (``aggregate``, ``power``) parametrise GML; ``matmul_dtype`` is
    ``float32`` or ``bfloat16`` (head matmuls only).
    """

    method: str = "gml"
    prior_strength: float = 1.0
    lr: float = 0.02
    epochs: int = 10
    batch_size: int = 128
    weight_decay: float = 2e-4
    momentum: float = 0.9
    sampler: str = "instance"
    init: str = "original"
    seed: int = 0
    matmul_dtype: str = "auto"
    loss_options: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: RetrainConfig) -> "HeadSettings":
        """The paper-exact head of a ``retrain`` section (baselines via :func:`baseline_settings`)."""
        settings = cls(
            method=config.method, prior_strength=float(config.prior_strength), lr=float(config.lr),
            epochs=int(config.epochs), batch_size=int(config.batch_size), weight_decay=float(config.weight_decay),
            momentum=float(config.momentum), sampler=config.sampler, init=config.init, seed=int(config.seed),
            matmul_dtype=config.matmul_dtype, loss_options=dict(config.loss_options),
        )
        return baseline_settings(settings.method, settings) if settings.method in BASELINE_METHODS else settings

    def to_dict(self) -> dict:
        return asdict(self)


def baseline_settings(method: str, base: HeadSettings) -> HeadSettings:
    """The classic decoupling recipe for ``method`` on top of ``base``'s optimiser settings."""
    if method == "crt":
        return replace(base, method="crt", sampler="class_balanced", init="fresh", loss_options={})
    if method == "lws":
        return replace(base, method="lws", sampler="class_balanced", init="original", loss_options={})
    if method == "tau_norm":
        return replace(base, method="tau_norm", init="original", loss_options={})
    raise NolbError(f"retrain.baselines: unknown baseline {method!r}, expected one of {', '.join(BASELINE_METHODS)}")


def stage2_recipe(preset: str) -> RetrainConfig:
    """The ``retrain`` section of the packaged recipe for a data preset (METHOD.md section 4).

    ImageNet-like presets take the ImageNet-LT recipe's stage-2 values (lr 0.005, batch 256,
    wd 5e-4); every other preset the defaults (the CIFAR recipe).
    """
    if preset not in PRESET_RECIPES:
        return RetrainConfig()
    from nolb.config import load_config

    return load_config(PRESET_RECIPES[preset]).retrain
