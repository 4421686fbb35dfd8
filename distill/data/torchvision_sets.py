"""torchvision's MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100, read whole into memory.

The dataset classes are torchvision's own (so ``download=True`` fetches the official files and
the on-disk formats are theirs); each split is taken at once from the object's ``data`` and
``targets`` instead of decoding image by image. The official test split is the test split; the
validation split is carved off the train split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from distill.data.base import Splits, make_splits
from distill.errors import UserError


def _as_nchw(data: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(data), dtype=torch.uint8)
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)  # (N,H,W) grey or (N,H,W,C) colour


def _load(
    cls_name: str, name: str, root: str, download: bool, val_fraction: float, split_seed: int, augment: str
) -> Splits:
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except RuntimeError as e:
        if "not found" not in str(e).lower() and "corrupted" not in str(e).lower():
            raise
        raise UserError(
            f"{name} files not found under dataset.root={root}; pass dataset.download=true to fetch "
            f"them, or point dataset.root at a folder that holds them"
        ) from None
    except OSError as e:  # URLError and socket errors while downloading
        raise UserError(
            f"downloading {name} into {root} failed ({type(e).__name__}: {e}); download the files "
            "by hand into dataset.root, or check the network"
        ) from None
    return make_splits(
        name,
        _as_nchw(train.data),
        torch.as_tensor(train.targets),
        _as_nchw(test.data),
        torch.as_tensor(test.targets),
        list(train.classes),
        augment=augment,
        val_fraction=val_fraction,
        split_seed=split_seed,
    )


def cifar10(
    root: str, download: bool = False, val_fraction: float = 0.1, split_seed: int = 0, augment: str = "crop_flip"
) -> Splits:
    """CIFAR-10: 50,000 train / 10,000 test colour images of 32x32, 10 classes."""
    return _load("CIFAR10", "cifar10", root, download, val_fraction, split_seed, augment)


def cifar100(
    root: str, download: bool = False, val_fraction: float = 0.1, split_seed: int = 0, augment: str = "crop_flip"
) -> Splits:
    """CIFAR-100: 50,000 train / 10,000 test colour images of 32x32, 100 fine classes."""
    return _load("CIFAR100", "cifar100", root, download, val_fraction, split_seed, augment)


def mnist(
    root: str, download: bool = False, val_fraction: float = 0.1, split_seed: int = 0, augment: str = "shift"
) -> Splits:
    """MNIST: 60,000 train / 10,000 test grey digits of 28x28."""
    return _load("MNIST", "mnist", root, download, val_fraction, split_seed, augment)


def fashion_mnist(
    root: str, download: bool = False, val_fraction: float = 0.1, split_seed: int = 0, augment: str = "shift"
) -> Splits:
    """Fashion-MNIST: 60,000 train / 10,000 test grey clothing images of 28x28."""
    return _load("FashionMNIST", "fashion_mnist", root, download, val_fraction, split_seed, augment)
