"""Backbones + replaceable classifiers, and weight loading (see :func:`build_model`)."""

from nolb.models.checkpoint import load_foreign_checkpoint, load_weights, save_weights, unwrap_model
from nolb.models.heads import HEAD_NAMES, NormedLinear, build_head
from nolb.models.registry import MODEL_NAMES, build_model
from nolb.models.resnet_cifar import CifarResNet, resnet20, resnet32
from nolb.models.small_cnn import SmallCNN
from nolb.models.torchvision_resnet import TorchvisionResNet

__all__ = [
    "HEAD_NAMES", "MODEL_NAMES", "CifarResNet", "NormedLinear", "SmallCNN", "TorchvisionResNet",
    "build_head", "build_model", "load_foreign_checkpoint", "load_weights", "resnet20", "resnet32",
    "save_weights", "unwrap_model",
]
