"""``build_model``: every backbone by a short name (or ``timm/<name>``), with its head and optional weights."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from torch import nn

from nolb.errors import NolbError, did_you_mean
from nolb.models.checkpoint import load_any_weights
from nolb.models.resnet_cifar import resnet20, resnet32
from nolb.models.small_cnn import SmallCNN
from nolb.models.timm_models import build_timm_model, is_timm_name
from nolb.models.torchvision_resnet import TORCHVISION_ARCHS, TorchvisionResNet


def _torchvision(arch: str) -> Callable[..., nn.Module]:
    def make(num_classes: int, **opts: Any) -> nn.Module:
        return TorchvisionResNet(arch, num_classes, **opts)

    return make


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "small_cnn": SmallCNN,
    **{arch: _torchvision(arch) for arch in TORCHVISION_ARCHS},
}
MODEL_NAMES = tuple(_BUILDERS)  # plus any "timm/<architecture>" (see nolb.models.timm_models)


TORCHVISION_PREFIX = "torchvision/"  # any torchvision classification model, for stage 2 of a checkpoint file


def model_names_for(name: str) -> tuple[str, ...]:
    """The names ``name`` is checked against: :data:`MODEL_NAMES`, plus ``name`` itself if it
    is ``timm/...`` or ``torchvision/...``."""
    return MODEL_NAMES + ((name,) if is_timm_name(name) or name.startswith(TORCHVISION_PREFIX) else ())


def build_model(
    name: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    head: str = "linear",
    weights: str | None = None,
    skip_classifier: bool = False,
    **opts: Any,
) -> nn.Module:
    """Build a model by name.

    Args:
        name: One of :data:`MODEL_NAMES`, or ``timm/<architecture>`` (any timm model, no download).
        num_classes: Number of classes C.
        in_channels: Image channels.
        head: ``"linear"`` or ``"cosine"`` (LDAM's normed linear head).
        weights: Optional local file: nolb ``.safetensors`` or a foreign ``torch.save`` file
            (read with ``weights_only=True``). Nothing is ever downloaded.
        skip_classifier: With ``weights``, load only the backbone (other class count).
        **opts: Model-specific options (``width`` for small_cnn, ``trainable_blocks`` for
            the torchvision ResNets).

    Returns:
        A module with ``forward_features``, ``classifier`` and ``feature_dim``.
    """
    if name.startswith(TORCHVISION_PREFIX):
        raise NolbError(f"model.name={name}: a torchvision/<name> model is for stage 2 of a checkpoint file "
                        f"(nolb retrain FILE CONFIG model.name={name}); to train, use one of {', '.join(MODEL_NAMES)} "
                        "or timm/<name>")
    builder = partial(build_timm_model, name) if is_timm_name(name) else _BUILDERS.get(name)
    if builder is None:
        raise NolbError(f"unknown model {name!r}{did_you_mean(name, MODEL_NAMES)}; expected one of {', '.join(MODEL_NAMES)} or timm/<name>")
    if num_classes < 1:
        raise NolbError(f"num_classes must be >= 1, got {num_classes}")
    try:
        model = builder(num_classes, in_channels=in_channels, head=head, **opts)
    except TypeError as exc:
        raise NolbError(f"bad option for model {name!r}: {exc}") from None
    if weights:
        load_any_weights(model, weights, skip_classifier=skip_classifier)
    return model
