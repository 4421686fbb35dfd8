"""The one in-memory form every dataset is turned into.

Images are kept as uint8 NCHW tensors (values 0-255). Conversion to float, scaling to [0, 1]
and normalisation happen inside the model (see ``distill.models.registry.Classifier``), so the
exported ONNX graph takes float32 images in [0, 1] and carries its own normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Splits:
    """Train/val/test splits held in memory.

    Attributes:
        train_x, val_x, test_x: uint8 tensors of shape (N, C, H, W).
        train_y, val_y, test_y: int64 tensors of shape (N,).
        classes: class names in label order.
        mean, std: per-channel statistics of the [0, 1] training images, used for normalisation.
        augment: the dataset's standard training augmentation: ``shift`` (random +-2 px
            translations, for digits and MNIST), ``crop_flip`` (4 px padded random crop and
            horizontal flip, for natural images) or ``none``.
        name: the dataset's name (as selected in the config).
        skipped: files passed over while reading (unreadable images under ``on_bad_image=skip``,
            special files named like images), each as ``"<path>: <why>"``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    skipped: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, as fractions of 255."""
    xf = x.double().div_(255.0)
    mean = xf.mean(dim=(0, 2, 3)).tolist()
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()
    return tuple(mean), tuple(std)


def split_indices(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """A fixed seeded permutation of ``range(n)`` cut into consecutive parts.

    ``fractions`` gives the size of every part but the last, which takes the rest.
    """
    perm = np.random.RandomState(seed).permutation(n)
    cuts = np.cumsum([round(f * n) for f in fractions])
    return np.split(perm, cuts)


def make_splits(
    name: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: list[str],
    augment: str,
    val_fraction: float,
    split_seed: int,
    val_x: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
) -> Splits:
    """Builds :class:`Splits`, carving a seeded validation split off the train split if none is given."""
    if val_x is None:
        val_idx, tr_idx = split_indices(len(train_y), (val_fraction,), split_seed)
        val_idx, tr_idx = torch.from_numpy(np.sort(val_idx)), torch.from_numpy(np.sort(tr_idx))
        val_x, val_y = train_x[val_idx], train_y[val_idx]
        train_x, train_y = train_x[tr_idx], train_y[tr_idx]
    mean, std = channel_stats(train_x)
    return Splits(
        name=name,
        train_x=train_x.contiguous(),
        train_y=train_y.long(),
        val_x=val_x.contiguous(),
        val_y=val_y.long(),
        test_x=test_x.contiguous(),
        test_y=test_y.long(),
        classes=list(classes),
        mean=mean,
        std=std,
        augment=augment,
    )
