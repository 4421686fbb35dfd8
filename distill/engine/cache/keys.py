"""The cache key: what a teacher's outputs depend on, hashed, and the augmented views drawn from a seed."""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import distill
from distill.data import augment as augment_module
from distill.data.augment import augment_batch

log = logging.getLogger("distill.engine.cache")

FORMAT_VERSION = 1
_CHUNK = 256


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (the teacher's weights or ONNX file)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensor_digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.contiguous().numpy().tobytes()).hexdigest()


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


def augment_code() -> str:
    """A short digest of the code that draws the views: edited augmentations draw other views."""
    try:
        source = "".join(inspect.getsource(o) for o in (augment_module, view_seed, _view_chunk, make_view))
    except (OSError, TypeError):  # an install without sources: the versions in the key still tell builds apart
        source = "no source"
    return hashlib.sha256(source.encode()).hexdigest()[:12]


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
    augment_code: str = field(default_factory=augment_code)
    version: int = FORMAT_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


def key_drift(key: dict[str, Any]) -> str | None:
    """How this install differs from the one that built an entry with ``key`` (None: it does not)."""
    now = {"distill_version": distill.__version__, "torch_version": str(torch.__version__)}
    now["augment_code"] = augment_code()
    for name, value in now.items():
        if key.get(name) != value:
            return f"built with {name}={key.get(name)}, this install has {value}"
    return None
