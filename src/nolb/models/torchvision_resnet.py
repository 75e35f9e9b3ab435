"""Torchvision's ImageNet ResNets (ResNet-50, ResNeXt-50 32x4d, ResNet-152) in nolb's shape.

The torchvision modules are built with ``weights=None``: nothing is ever downloaded.
Pretrained weights come only from a local file the user names (``weights=`` of
:func:`nolb.models.build_model`), read with :func:`nolb.io.safe_torch_load`.  The stem and
the four stages keep torchvision's parameter names; torchvision's ``fc`` becomes
``classifier``.  ``trainable_blocks=k`` freezes everything except the last ``k`` stages and
the classifier (Places-LT: a frozen ImageNet ResNet-152 with one trainable block); frozen
BatchNorm layers stay in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

from nolb.errors import NolbError, did_you_mean
from nolb.models.heads import build_head

TORCHVISION_ARCHS = ("resnet50", "resnext50_32x4d", "resnet152")


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet split into ``forward_features`` and a replaceable ``classifier``.

    Args:
        arch: One of :data:`TORCHVISION_ARCHS`.
        num_classes: Number of classes C.
        in_channels: Must be 3 (ImageNet stems).
        head: ``"linear"`` or ``"cosine"``.
        trainable_blocks: ``None`` trains everything; ``k`` in 0..4 trains only the last
            ``k`` of ``layer1..layer4`` plus the classifier.
    """

    foreign_key_renames = {"fc.": "classifier."}

    def __init__(
        self, arch: str, num_classes: int, *, in_channels: int = 3, head: str = "linear", trainable_blocks: int | None = None
    ) -> None:
        super().__init__()
        import torchvision.models as tvm

        if arch not in TORCHVISION_ARCHS:
            raise NolbError(f"unknown torchvision model {arch!r}{did_you_mean(arch, TORCHVISION_ARCHS)}; "
                            f"expected one of {', '.join(TORCHVISION_ARCHS)}")
        if in_channels != 3:
            raise NolbError(f"model {arch} expects 3-channel images, the data has {in_channels}")
        net = getattr(tvm, arch)(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.feature_dim = net.fc.in_features
        self.classifier = build_head(head, self.feature_dim, num_classes)
        self.trainable_blocks = trainable_blocks
        if trainable_blocks is not None:
            if not 0 <= trainable_blocks <= 4:
                raise NolbError(f"model.trainable_blocks must be in 0..4, got {trainable_blocks}")
            for module in self.frozen_modules():
                module.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        """The stem and the stages that ``trainable_blocks`` freezes (empty when all train)."""
        if self.trainable_blocks is None:
            return []
        stages = [self.layer1, self.layer2, self.layer3, self.layer4]
        return [self.conv1, self.bn1, *stages[: 4 - self.trainable_blocks]]

    def train(self, mode: bool = True) -> "TorchvisionResNet":
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # frozen BatchNorm keeps its pretrained statistics
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features, shape (N, 2048)."""
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
