"""Random images with random labels: for measuring speed only (never accuracy).

The same workload as ``shared/bench/kdbench.py --data synth``: ``n_train`` images of
``channels`` x ``size`` x ``size`` and labels 0-9 drawn from a seeded generator (here uint8
pixels, as every distill dataset holds them, instead of float noise).
"""

from __future__ import annotations

import torch

from distill.data.base import Splits


def synthetic(
    n_train: int = 1024, size: int = 32, channels: int = 3, n_eval: int = 256, seed: int = 0, augment: str = "none"
) -> Splits:
    g = torch.Generator().manual_seed(seed)

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
        return x, torch.randint(0, 10, (n,), generator=g)

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = images(n_train), images(n_eval), images(n_eval)
    return Splits(
        name="synthetic",
        train_x=train_x,
        train_y=train_y,
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
        classes=[str(i) for i in range(10)],
        mean=(0.5,) * channels,
        std=(0.29,) * channels,
        augment=augment,
    )
