"""Batches straight from in-memory uint8 tensors, or read from image files (:class:`LazyImages`),
optionally prepared by DataLoader workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from distill.data.augment import augment_batch
from distill.data.streaming import STREAMED, LazyImages
from distill.engine import distributed as dist
from distill.errors import UserError


class _EpochBatches(Dataset):
    """Batch ``i`` of one epoch: indices fixed up front, augmentation drawn from a per-batch seed."""

    def __init__(
        self,
        x: torch.Tensor | LazyImages,
        y: torch.Tensor,
        order: torch.Tensor,
        batch_size: int,
        augment: str,
        seed: int,
        view: tuple[int, int] = (0, 0),
    ) -> None:
        self.x, self.y, self.order, self.batch_size = x, y, order, batch_size
        self.augment, self.seed, self.view = augment, seed, view

    def __len__(self) -> int:
        return (len(self.order) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        if self.augment == STREAMED:  # files: each training view drawn from (seed, view, index) as it is read
            return self.x.train_batch(idx, view=self.view[1], seed=self.view[0]), self.y[idx], idx
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return augment_batch(self.x[idx], self.augment, g), self.y[idx], idx


class _AnyEpochBatches(Dataset):
    """Item ``(epoch, i)``: batch ``i`` of that epoch, for worker processes that outlive an epoch.

    The workers keep the last epoch's batches (order, and the cached views) so that each epoch
    is set up once per worker, not once per batch.
    """

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader
        self._epoch: int | None = None
        self._batches: _EpochBatches | None = None

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, i = key
        if epoch != self._epoch:
            self._batches, self._epoch = self.loader._epoch_batches(epoch), epoch
        return self._batches[i]


class _EpochKeys(Sampler):
    """``(epoch, start) ... (epoch, n - 1)`` for the loader's current epoch, read when iterated."""

    def __init__(self, loader: BatchLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.loader.epoch
        return iter([(epoch, i) for i in range(self.loader._start, len(self.loader))])


class BatchLoader:
    """Shuffled, augmented batches of float [0, 1] images on ``device``.

    Every epoch's order and augmentation follow from ``(seed, epoch)`` alone, so a run is
    reproducible whatever the number of workers.

    Args:
        x: uint8 images (N, C, H, W), or :class:`LazyImages` read from files (with ``augment``
            ``random_resized_crop``: epoch ``e``'s view of image ``i`` is drawn from ``(seed, e, i)``,
            whichever worker reads it); y: labels (N,).
        augment: see :data:`distill.data.augment.AUGMENTS`.
        num_workers: 0 prepares batches in the training process (fastest for small in-memory
            data); more uses DataLoader worker processes, started on the first epoch and kept
            (persistent), with pinned memory on CUDA; worthwhile when augmentation is heavy.
        channels_last: hand images over in channels-last memory format.
        with_index: also yield each batch's positions in ``x`` (for per-sample memory banks).
        view_fn: ``epoch -> images`` (uint8, like ``x``) to train on instead of augmenting ``x``:
            the pre-drawn views a teacher cache was built from.
        shard: under torchrun, yield only this rank's share of each epoch (DistributedSampler).
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
        shard: bool = False,
    ) -> None:
        self.x, self.y = x, y
        self.world, self.rank = (dist.world_size(), dist.rank()) if shard else (1, 0)
        self.batch_size, self.shuffle, self.augment, self.seed = batch_size, shuffle, augment, seed
        self.device = torch.device(device)
        self.num_workers, self.channels_last, self.drop_last = num_workers, channels_last, drop_last
        self.with_index = with_index
        self.view_fn = view_fn
        self.epoch = 0
        self._workers: DataLoader | None = None
        self._start = 0  # the first batch the workers' current epoch yields

    def __len__(self) -> int:
        n = -(-len(self.y) // self.world)  # a rank's share, padded as DistributedSampler pads
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def __getstate__(self) -> dict:  # what worker processes get: no handle on the workers themselves
        return {**self.__dict__, "_workers": None}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self, epoch: int) -> torch.Tensor:
        n = len(self.y)
        if self.world > 1:
            order = dist.shard_order(n, self.seed * 7919, epoch)
            return order[: len(self) * self.batch_size] if self.drop_last else order
        if not self.shuffle:
            order = torch.arange(n)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        return order[: len(self) * self.batch_size] if self.drop_last else order

    def _to_device(self, xb: torch.Tensor, yb: torch.Tensor, ib: torch.Tensor) -> tuple[torch.Tensor, ...]:
        nb = self.device.type == "cuda"
        xb = xb.to(self.device, non_blocking=nb).float().div_(255.0)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        yb = yb.to(self.device, non_blocking=nb)
        return (xb, yb, ib.to(self.device, non_blocking=nb)) if self.with_index else (xb, yb)

    def _epoch_batches(self, epoch: int) -> _EpochBatches:
        x, augment = (self.view_fn(epoch), "none") if self.view_fn is not None else (self.x, self.augment)
        seed = self.seed * 104729 + epoch
        if self.world > 1:  # each rank draws its own augmentation
            seed = seed * 4099 + self.rank + 1
        return _EpochBatches(x, self.y, self._order(epoch), self.batch_size, augment, seed, (self.seed, epoch))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return self.batches(0)

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """This epoch's batches from batch ``start`` on (the rest of an epoch a run resumes in)."""
        if self.num_workers == 0:
            ds = self._epoch_batches(self.epoch)
            for i in range(start, len(ds)):
                yield self._to_device(*ds[i])
            return
        if self._workers is None:  # started once, kept for every later epoch (persistent workers)
            self._workers = DataLoader(
                _AnyEpochBatches(self),
                batch_size=None,
                sampler=_EpochKeys(self),
                num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=True,
                prefetch_factor=4,
                generator=torch.Generator(),  # the workers' seeds, not drawn from the global generator
            )
        self._start = start
        try:
            for xb, yb, ib in self._workers:
                yield self._to_device(xb, yb, ib)
        except UserError as e:  # raised in a worker (an unreadable file): its own line, not the traceback
            raise worker_error(e) from None


def worker_error(e: UserError) -> UserError:
    """A UserError raised in a DataLoader worker, which the DataLoader re-raises wrapped in the worker's
    traceback, as its own one line again."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return UserError(lines[-1].removeprefix(f"{UserError.__module__}.UserError: ") if lines else str(e))
