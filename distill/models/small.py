"""Small students for tiny data: Hinton's MLP and LeNet-5."""

from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    """Fully connected classifier: Flatten, then Linear+ReLU(+Dropout) per hidden width, then ``fc``."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def mlp(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    hidden: list[int] | tuple[int, ...] = (800, 800),
    dropout: float = 0.0,
) -> nn.Module:
    """Hinton's MNIST student (Hinton, Vinyals and Dean 2015): 2 hidden layers of 800 ReLU units by default.

    Takes the images at their own size: in_channels x H x W inputs.
    """
    return MLP(in_channels * image_size[0] * image_size[1], num_classes, tuple(hidden), dropout)


class LeNet5(nn.Module):
    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(84, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998) for 32x32 inputs, in its modern form (ReLU, max pooling); 62k parameters."""
    return LeNet5(num_classes, in_channels)
