"""ResNet-20/32 for 32x32 images: the CIFAR variant of He et al. (2016) used by LDAM-DRW.

A 3x3 stem with 16 channels, three stages of ``n`` BasicBlocks with 16/32/64 channels
(``n = 3`` gives ResNet-20, ``n = 5`` ResNet-32), global average pooling to a 64-d feature
and a classifier.  Downsampling shortcuts use "option A": ``x[:, :, ::2, ::2]`` zero-padded
by ``planes // 4`` channels on each side, which has no parameters.  Parameter names match
the akamaster/LDAM-DRW checkpoints (after stripping ``module.``), except the final layer
``linear`` which is ``classifier`` here (see :mod:`nolb.models.checkpoint`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nolb.models.heads import build_head


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by 2 and zero-pad the channel dimension."""

    def __init__(self, pad_channels: int) -> None:
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad_channels
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection: ``relu(bn2(conv2(relu(bn1(conv1 x)))) + s(x))``."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = PadShortcut(planes // 4)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet with ``blocks_per_stage`` BasicBlocks in each of 3 stages.

    Args:
        blocks_per_stage: ``n``; depth is ``6n + 2``.
        num_classes: Number of classes C.
        in_channels: Image channels.
        head: ``"linear"`` or ``"cosine"`` (LDAM's normed linear head).
    """

    feature_dim = 64

    def __init__(self, blocks_per_stage: int, num_classes: int, *, in_channels: int = 3, head: str = "linear") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._stage(32, 64, blocks_per_stage, stride=2)
        self.classifier = build_head(head, self.feature_dim, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 64-d globally pooled feature of each image, shape (N, 64)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))

    # Key renames applied when loading a foreign (akamaster / LDAM-DRW) checkpoint.
    foreign_key_renames = {"linear.": "classifier."}


def resnet20(num_classes: int, *, in_channels: int = 3, head: str = "linear") -> CifarResNet:
    """ResNet-20 (3 blocks per stage, 0.27 M parameters)."""
    return CifarResNet(3, num_classes, in_channels=in_channels, head=head)


def resnet32(num_classes: int, *, in_channels: int = 3, head: str = "linear") -> CifarResNet:
    """ResNet-32 (5 blocks per stage, 0.46 M parameters), the standard CIFAR-LT backbone."""
    return CifarResNet(5, num_classes, in_channels=in_channels, head=head)
