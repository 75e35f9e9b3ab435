"""A small CNN for tiny grey-scale images (28x28 Fashion-MNIST, 8x8 digits).

Three stages of 3x3 conv-BN-ReLU layers (32, 64, 128 channels; ``depth`` layers per stage,
one by default) with a 2x2 max-pool after the first two when the input is at least 16 pixels
wide, then global average pooling to a 128-d feature.  It trains in seconds on a CPU, which
is what the demo and the tests need; benchmarks/cpu_recipes.py measures width and depth
against wall time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nolb.errors import NolbError
from nolb.models.heads import build_head


def _conv_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


def _stage(in_ch: int, out_ch: int, depth: int) -> nn.Sequential:
    """``depth`` conv-BN-ReLU layers; depth 1 keeps the one-layer parameter names of earlier checkpoints."""
    if depth == 1:
        return _conv_bn(in_ch, out_ch)
    return nn.Sequential(*(_conv_bn(in_ch if i == 0 else out_ch, out_ch) for i in range(depth)))


class SmallCNN(nn.Module):
    """Conv(32) - Conv(64) - Conv(128) - global average pool - classifier.

    Args:
        num_classes: Number of classes C.
        in_channels: Image channels (1 for grey-scale).
        head: ``"linear"`` or ``"cosine"``.
        width: Channels of the first stage; the others are 2x and 4x.
        depth: Conv layers per stage (1: three layers in all; 2: six).
    """

    def __init__(self, num_classes: int, *, in_channels: int = 1, head: str = "linear", width: int = 32,
                 depth: int = 1) -> None:
        super().__init__()
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise NolbError(f"small_cnn: depth={depth!r}; expected an integer >= 1 (conv layers per stage)")
        self.block1 = _stage(in_channels, width, depth)
        self.block2 = _stage(width, 2 * width, depth)
        self.block3 = _stage(2 * width, 4 * width, depth)
        self.feature_dim = 4 * width
        self.classifier = build_head(head, self.feature_dim, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features, shape (N, 4 * width)."""
        pool = x.shape[-1] >= 16
        out = self.block1(x)
        out = F.max_pool2d(out, 2) if pool else out
        out = self.block2(out)
        out = F.max_pool2d(out, 2) if pool else out
        out = self.block3(out)
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
