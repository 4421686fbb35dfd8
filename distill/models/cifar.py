"""Compact CIFAR architectures of the knowledge-distillation literature.

The teacher/student pairs of Tian, Krishnan and Isola 2020, "Contrastive Representation
Distillation" (ICLR), reused by most later CIFAR-100 KD papers: CIFAR ResNets (He et al. 2016,
depth 6n+2; "x4" = four times the channels), Wide ResNets (Zagoruyko and Komodakis 2016) and VGG
with BatchNorm. Written for 32x32 inputs; global average pooling lets them take 8 to 64 px.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


def _init(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class CifarResNet(nn.Module):
    """ResNet of depth 6n+2 with a 3x3 stem and three stages of n basic blocks."""

    def __init__(self, depth: int, widths: tuple[int, int, int, int], num_classes: int, in_channels: int) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths[1:]):
            blocks = [_Basic(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.pool(x).flatten(1))


class _WideBlock(nn.Module):
    """Pre-activation wide block."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return y + (x if self.short is None else self.short(o))


class WideResNet(nn.Module):
    """WRN-depth-k: three stages of (depth-4)/6 pre-activation blocks of widths 16k, 32k, 64k."""

    def __init__(self, depth: int, k: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths[1:]):
            stages.append(
                nn.Sequential(
                    *[
                        _WideBlock(cin if j == 0 else cout, cout, (1 if i == 0 else 2) if j == 0 else 1)
                        for j in range(n)
                    ]
                )
            )
            cin = cout
        self.block1, self.block2, self.block3 = stages
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        _init(self)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(self.pool(F.relu(self.bn(x))).flatten(1))


class _SafePool(nn.Module):
    """2x2 max pooling that leaves a side of 1 pixel alone, so 8 px inputs pass through five stages."""

    def forward(self, x):
        return F.max_pool2d(x, 2) if min(x.shape[-2:]) >= 2 else x


class CifarVGG(nn.Module):
    """VGG with BatchNorm: five stages of 3x3 convs separated by max pooling, then a linear head."""

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

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def resnet8x4(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-8 with 4x channels (32-64-128-256): about 1.2M parameters."""
    return CifarResNet(8, (32, 64, 128, 256), num_classes, in_channels)


def resnet32x4(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """ResNet-32 with 4x channels (32-64-128-256): about 7.4M parameters."""
    return CifarResNet(32, (32, 64, 128, 256), num_classes, in_channels)


def wrn_16_2(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """WRN-16-2: about 0.7M parameters."""
    return WideResNet(16, 2, num_classes, in_channels)


def wrn_40_2(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """WRN-40-2: about 2.2M parameters."""
    return WideResNet(40, 2, num_classes, in_channels)


def vgg8(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """VGG-8 with BatchNorm (one conv per stage): about 3.9M parameters."""
    return CifarVGG([[64], [128], [256], [512], [512]], num_classes, in_channels)


def vgg13(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """VGG-13 with BatchNorm (two convs per stage): about 9.4M parameters."""
    return CifarVGG([[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]], num_classes, in_channels)
