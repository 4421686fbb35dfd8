"""Small students for tiny data: Hinton's fully connected network and LeNet-5.

* :func:`mlp`: the 2x800 ReLU network that Hinton, Vinyals and Dean 2015, "Distilling the
  Knowledge in a Neural Network", distil into on MNIST.
* :func:`lenet5`: LeCun, Bottou, Bengio and Haffner 1998, "Gradient-Based Learning Applied to
  Document Recognition", in its modern form (ReLU and max pooling).

The head is the Linear attribute ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected classifier: Flatten, then Linear-ReLU(-Dropout) per hidden width, then ``fc``.

    Args:
        in_features: length of a flattened input (channels x height x width).
        num_classes: outputs of the head ``fc``.
        hidden: widths of the hidden layers; empty gives a linear classifier.
        dropout: dropout probability after each hidden layer; 0 adds no Dropout layer.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def mlp(
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: tuple[int, int] = (28, 28),
    hidden: list[int] | tuple[int, ...] = (800, 800),
    dropout: float = 0.0,
) -> nn.Module:
    """Hinton's MNIST student: two hidden layers of 800 ReLU units; 1,276,810 parameters on 28x28x1.

    Args:
        num_classes: outputs of the head ``fc``.
        in_channels: channels of the input images.
        image_size: (H, W) of the inputs; the network takes them at this size, flattened.
        hidden: widths of the hidden layers.
        dropout: dropout probability after each hidden layer (Hinton et al. used dropout for the
            teacher, none for the small student).

    Returns:
        An :class:`MLP` taking in_channels x H x W inputs.
    """
    return MLP(in_channels * image_size[0] * image_size[1], num_classes, tuple(hidden), dropout)


class LeNet5(nn.Module):
    """LeNet-5 with ReLU and max pooling, for 32x32 inputs.

    Args:
        num_classes: outputs of the head ``fc``.
        in_channels: channels of the input images.
    """

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),  # 32 -> 28
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 14
            nn.Conv2d(6, 16, 5),  # 10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 5
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (32, 32):
            raise ValueError(f"LeNet-5 takes 32x32 inputs, got {tuple(x.shape[-2:])}; resize them first")
        return self.fc(self.features(x))


def lenet5(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998), modern variant with ReLU and max pooling: 61,706 parameters.

    The original used scaled tanh units, subsampling layers and an RBF output layer; this one keeps
    its layout (conv 6@5x5, pool, conv 16@5x5, pool, fc 120, fc 84, head) with ReLU and max pooling.
    It needs exactly 32x32 inputs: callers resize (the model registry does so).

    Args:
        num_classes: outputs of the head ``fc``.
        in_channels: channels of the input images.

    Returns:
        A :class:`LeNet5`.
    """
    return LeNet5(num_classes, in_channels)
