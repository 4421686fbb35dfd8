"""The cache key: what a teacher's outputs depend on, hashed, and the augmented views drawn from a seed."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

import distill
from distill.data import augment as augment_module
from distill.data import streaming as streaming_module
from distill.data.augment import augment_batch
from distill.data.streaming import STREAMED, LazyImages
from distill.engine.batches import worker_error
from distill.errors import UserError

log = logging.getLogger("distill.engine.cache")

FORMAT_VERSION = 1
_CHUNK = 256


_digests: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the teacher's weights or ONNX file). Read once per process for the
    same file: the digest is kept under its device, inode, size, mtime and ctime (any write changes
    the ctime), so a sweep's members do not hash a resnet152's 230 MB again each."""
    st = os.stat(path)
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if stamp in _digests:
        return _digests[stamp]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    _digests[stamp] = h.hexdigest()
    return _digests[stamp]


def tensor_digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


def images_digest(x: torch.Tensor | LazyImages) -> str:
    """What identifies a split's training images: the bytes of in-memory ones; the files (path, size,
    modification time) and recipe of streamed ones."""
    return x.digest() if isinstance(x, LazyImages) else tensor_digest(x)


def view_seed(seed: int, k: int, chunk: int) -> int:
    """The generator seed of chunk ``chunk`` of view ``k``."""
    return ((seed * 1_000_003 + k) * 7919 + chunk) % (2**63)


def _view_chunk(x: torch.Tensor, augment: str, k: int, seed: int, chunk: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(view_seed(seed, k, chunk))
    return augment_batch(x[chunk * _CHUNK : (chunk + 1) * _CHUNK], augment, g)


def make_view(x: torch.Tensor, augment: str, k: int, seed: int) -> torch.Tensor:
    """View ``k`` of every image of ``x`` (uint8): the images themselves when ``augment`` is none,
    else each chunk augmented with a generator seeded by ``(seed, k, chunk)``."""
    if augment == "none":
        return x
    return torch.cat([_view_chunk(x, augment, k, seed, c) for c in range(math.ceil(len(x) / _CHUNK))])


def view_rows(x: torch.Tensor | LazyImages, augment: str, k: int, seed: int, rows: np.ndarray) -> torch.Tensor:
    """Rows ``rows`` of view ``k`` (as :func:`make_view` or a streamed split draws it), drawing only the
    chunks (in memory) or the files (streamed) that hold them."""
    index = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    if augment == STREAMED:
        return x.train_batch(index, view=k, seed=seed)
    if augment == "none":
        return x[index]
    chunks = {int(c): _view_chunk(x, augment, k, seed, int(c)) for c in np.unique(index.numpy() // _CHUNK)}
    return torch.stack([chunks[int(i) // _CHUNK][int(i) % _CHUNK] for i in index])


def view_batches(x: torch.Tensor | LazyImages, augment: str, k: int, seed: int, batch_size: int, num_workers: int = 0):
    """View ``k`` of ``x`` in order, ``batch_size`` images at a time: slices of :func:`make_view` for
    in-memory images; for streamed ones, decoded in ``num_workers`` DataLoader processes, so a view of
    a folder never has to fit in memory."""
    if not isinstance(x, LazyImages):
        view = make_view(x, augment, k, seed)
        yield from (view[i : i + batch_size] for i in range(0, len(view), batch_size))
        return
    images = x.view(k, seed) if augment == STREAMED else x
    # its own generator: the workers' seeds are not drawn from torch's global one, which seeds the student
    loader = DataLoader(images, batch_size=batch_size, num_workers=num_workers, generator=torch.Generator())
    try:
        yield from loader
    except UserError as e:  # an unreadable file met in a worker: one line naming it
        raise worker_error(e) from None


def augment_code() -> str:
    """A short digest of the code that draws the views: edited augmentations draw other views."""
    try:
        parts = (augment_module, streaming_module, view_seed, _view_chunk, make_view)
        source = "".join(inspect.getsource(o) for o in parts)
    except (OSError, TypeError):  # an install without sources: the versions in the key still tell builds apart
        source = "no source"
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def image_libraries() -> str:
    """The versions of what decodes and augments streamed images (Pillow's decoders and resampling,
    torchvision's RandAugment): other versions may draw other pixels."""
    import PIL
    import torchvision

    return f"pillow {PIL.__version__}, torchvision {torchvision.__version__}"


@dataclass
class CacheKey:
    """Everything the cached outputs depend on."""

    teacher: str  # digest of the teacher's weights file
    images: str  # digest of the training images (uint8)
    dataset: dict[str, Any]
    augment: str
    views: int
    seed: int
    taps: list[str] = field(default_factory=list)
    precision: str = "32"
    distill_version: str = distill.__version__
    torch_version: str = str(torch.__version__)
    image_libraries: str = field(default_factory=image_libraries)
    augment_code: str = field(default_factory=augment_code)
    version: int = FORMAT_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


def key_drift(key: dict[str, Any]) -> str | None:
    """How this install differs from the one that built an entry with ``key`` (None: it does not)."""
    now = {"distill_version": distill.__version__, "torch_version": str(torch.__version__)}
    now["image_libraries"] = image_libraries()
    now["augment_code"] = augment_code()
    for name, value in now.items():
        if key.get(name) != value:
            return f"built with {name}={key.get(name)}, this install has {value}"
    return None
