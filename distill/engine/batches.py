"""Batches straight from in-memory uint8 tensors, optionally prepared by DataLoader workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from distill.data.augment import augment_batch


class _EpochBatches(Dataset):
    """Batch ``i`` of one epoch: indices fixed up front, augmentation drawn from a per-batch seed."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch_size: int, augment: str, seed: int
    ) -> None:
        self.x, self.y, self.order, self.batch_size = x, y, order, batch_size
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return augment_batch(self.x[idx], self.augment, g), self.y[idx], idx


class BatchLoader:
    """Shuffled, augmented batches of float [0, 1] images on ``device``.

    Every epoch's order and augmentation follow from ``(seed, epoch)`` alone, so a run is
    reproducible whatever the number of workers.

    Args:
        x: uint8 images (N, C, H, W); y: labels (N,).
        augment: see :data:`distill.data.augment.AUGMENTS`.
        num_workers: 0 prepares batches in the training process (fastest for small in-memory
            data); more uses DataLoader worker processes, worthwhile when augmentation is heavy.
        channels_last: hand images over in channels-last memory format.
        with_index: also yield each batch's positions in ``x`` (for per-sample memory banks).
        view_fn: ``epoch -> images`` (uint8, like ``x``) to train on instead of augmenting ``x``:
            the pre-drawn views a teacher cache was built from.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: str = "none",
        seed: int = 0,
        device: torch.device | str = "cpu",
        num_workers: int = 0,
        channels_last: bool = False,
        drop_last: bool = False,
        with_index: bool = False,
        view_fn: Callable[[int], torch.Tensor] | None = None,
    ) -> None:
        self.x, self.y = x, y
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, shuffle, augment, seed
        self.device = torch.device(device)
        self.num_workers, self.channels_last, self.drop_last = num_workers, channels_last, drop_last
        self.with_index = with_index
        self.view_fn = view_fn
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.y)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> torch.Tensor:
        n = len(self.y)
        if not self.shuffle:
            order = torch.arange(n)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch))
        return order[: len(self) * self.batch_size] if self.drop_last else order

    def _to_device(self, xb: torch.Tensor, yb: torch.Tensor, ib: torch.Tensor) -> tuple[torch.Tensor, ...]:
        nb = self.device.type == "cuda"
        xb = xb.to(self.device, non_blocking=nb).float().div_(255.0)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = yb.to(self.device, non_blocking=nb)
        return (xb, yb, ib.to(self.device, non_blocking=nb)) if self.with_index else (xb, yb)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        x, augment = (self.view_fn(self.epoch), "none") if self.view_fn is not None else (self.x, self.augment)
        ds = _EpochBatches(x, self.y, self._order(), self.batch_size, augment, self.seed * 104729 + self.epoch)
        if self.num_workers == 0:
            for i in range(len(ds)):
                yield self._to_device(*ds[i])
            return
        loader = DataLoader(
            ds,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        for xb, yb, ib in loader:
            yield self._to_device(xb, yb, ib)
