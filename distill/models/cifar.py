"""Compact CIFAR architectures of the knowledge-distillation literature.

The teacher/student pairs of Tian, Krishnan and Isola 2020, "Contrastive Representation
Distillation" (CRD, ICLR 2020), reused by most later CIFAR-100 KD papers:

* CIFAR ResNets (He et al. 2016): depth 6n+2, a 3x3 stem and three stages of n basic blocks;
  "x4" means widths 32-64-128-256, four times the usual 16-32-64 (resnet8x4, resnet32x4).
* Wide ResNets (Zagoruyko and Komodakis 2016): WRN-depth-k with pre-activation blocks, no dropout.
* VGG with BatchNorm (Simonyan and Zisserman 2015): five stages of 3x3 convolutions.

They are built for 32x32 inputs, but global average pooling in front of the head (and pooling
that leaves a 1-pixel side alone in VGG) lets every one of them take anything from 8x8 to 64x64.
The head is the Linear attribute ``fc`` (``classifier`` for VGG).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _init(model: nn.Module) -> nn.Module:
    """Kaiming-normal convolutions, BatchNorm at weight 1 and bias 0, Linear biases at 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model


class _Basic(nn.Module):
    """Post-activation basic block: two 3x3 convolutions and a (projected if needed) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class CifarResNet(nn.Module):
    """ResNet of depth 6n+2 with a 3x3 stem and three stages of n basic blocks.

    Args:
        depth: total depth, 6n+2 (8 gives one block per stage, 32 gives five).
        widths: channels of the stem and of the three stages.
        num_classes: outputs of the head ``fc``.
        in_channels: channels of the input images.
    """

    def __init__(self, depth: int, widths: tuple[int, ...], num_classes: int, in_channels: int) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        if len(widths) != 4:
            raise ValueError(f"CIFAR ResNet takes 4 widths (stem and three stages), got {widths}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths[1:]):
            stride = 1 if i == 0 else 2
            blocks = [_Basic(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


class _WideBlock(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv twice, the shortcut projected from the activation."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short: nn.Module | None = None
        if cin != cout or stride != 1:
            self.short = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return y + (x if self.short is None else self.short(o))


class WideResNet(nn.Module):
    """WRN-depth-k: three stages of (depth-4)/6 pre-activation blocks of widths 16k, 32k, 64k.

    Args:
        depth: total depth, 6n+4.
        k: widening factor.
        num_classes: outputs of the head ``fc``.
        in_channels: channels of the input images.
    """

    def __init__(self, depth: int, k: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n+4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths[1:]):
            stride = 1 if i == 0 else 2
            blocks = [_WideBlock(cin if j == 0 else cout, cout, stride if j == 0 else 1) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.pool(F.relu(self.bn(x))).flatten(1))


class _SafePool(nn.Module):
    """2x2 max pooling that leaves a 1-pixel side alone, so 8 px inputs pass through all five stages."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x


class CifarVGG(nn.Module):
    """VGG with BatchNorm: stages of 3x3 conv-BN-ReLU separated by max pooling, then a linear head.

    Args:
        cfg: output channels of each convolution, one list per stage.
        num_classes: outputs of the head ``classifier``.
        in_channels: channels of the input images.
    """

    def __init__(self, cfg: list[list[int]], num_classes: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, stage in enumerate(cfg):
            for cout in stage:
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            if i < len(cfg) - 1:
                layers.append(_SafePool())
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def resnet8x4(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-8x4 (widths 32-64-128-256, one block per stage): 1,210,410 parameters for 10 classes."""
    return CifarResNet(8, (32, 64, 128, 256), num_classes, in_channels)


def resnet32x4(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-32x4 (widths 32-64-128-256, five blocks per stage): 7,410,730 parameters for 10 classes."""
    return CifarResNet(32, (32, 64, 128, 256), num_classes, in_channels)


def wrn_16_2(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """WRN-16-2 (widths 32-64-128, two blocks per stage): 691,674 parameters for 10 classes."""
    return WideResNet(16, 2, num_classes, in_channels)


def wrn_40_2(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """WRN-40-2 (widths 32-64-128, six blocks per stage): 2,243,546 parameters for 10 classes."""
    return WideResNet(40, 2, num_classes, in_channels)


def vgg8(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """VGG-8 with BatchNorm (one conv per stage, 64 to 512 channels): 3,918,858 parameters for 10 classes."""
    return CifarVGG([[64], [128], [256], [512], [512]], num_classes, in_channels)


def vgg13(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """VGG-13 with BatchNorm (two convs per stage, 64 to 512 channels): 9,416,010 parameters, 10 classes."""
    return CifarVGG([[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]], num_classes, in_channels)
