"""Teacher outputs computed once, stored memory-mapped, and read by every later epoch, run and sweep.

An entry holds, for K views of every training image, the teacher's logits and the features of
the layers a method reads, in float16, one ``.npy`` file per kind (never a file per sample):

    <cache>/<key>/logits.npy      (K, N, classes)      float16
    <cache>/<key>/feat_<j>.npy    (K, N, *shape)       float16
    <cache>/<key>/meta.json       what the key covers, shapes, seeds, build time

Without random augmentation K = 1 and the view is the image itself. With it, view k of every
image is drawn from a seed stored with the outputs (chunk c of view k from the generator seeded by
``(seed, k, c)``), so the student's loader regenerates exactly the views the teacher saw (epoch e
uses view e mod K) without storing any image.

The key is a hash of everything the outputs depend on: the teacher's weights (file digest), the
training images themselves (digest of the uint8 tensor), the dataset config, the augmentation,
K and the seed, the tapped layers and the teacher's precision. A changed teacher, image,
transform or seed gives a new key, so a stale entry is never read. An entry appears whole or not
at all (written in a temporary folder, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill.data.augment import augment_batch
from distill.engine.checkpoint import publish
from distill.engine.taps import Taps

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
    version: int = FORMAT_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class CacheEntry:
    """An opened entry: memory-mapped arrays, read lazily row by row."""

    path: Path
    meta: dict[str, Any]
    logits: np.ndarray
    feats: list[np.ndarray]

    @property
    def num_views(self) -> int:
        return int(self.logits.shape[0])


def entry_dir(root: str | Path, key: CacheKey) -> Path:
    return Path(root) / key.digest()


def open_entry(path: Path) -> CacheEntry | None:
    """The entry in ``path``, or None when there is no complete one."""
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    meta = json.loads(meta_file.read_text())
    if meta.get("version") != FORMAT_VERSION:
        return None
    logits = np.load(path / "logits.npy", mmap_mode="r")
    feats = [np.load(path / f"feat_{j}.npy", mmap_mode="r") for j in range(len(meta["key"]["taps"]))]
    os.utime(meta_file)  # last used, for `distill cache ls`
    return CacheEntry(path, meta, logits, feats)


def make_view(x: torch.Tensor, augment: str, k: int, seed: int) -> torch.Tensor:
    """View ``k`` of every image of ``x`` (uint8): the images themselves when ``augment`` is none,
    else each chunk augmented with a generator seeded by ``(seed, k, chunk)``."""
    if augment == "none":
        return x
    chunks = []
    for c, start in enumerate(range(0, len(x), _CHUNK)):
        g = torch.Generator().manual_seed(((seed * 1_000_003 + k) * 7919 + c) % (2**63))
        chunks.append(augment_batch(x[start : start + _CHUNK], augment, g))
    return torch.cat(chunks)


@torch.no_grad()
def build_entry(
    root: str | Path,
    key: CacheKey,
    teacher: nn.Module,
    tap_names: list[str],
    x: torch.Tensor,
    *,
    device: torch.device,
    batch_size: int = 256,
    channels_last: bool = False,
    autocast_ctx: Any = None,
    meta: dict[str, Any] | None = None,
) -> CacheEntry:
    """Runs the teacher once over every view of ``x`` and stores its outputs under ``root``."""
    import contextlib

    final = entry_dir(root, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    start = time.perf_counter()
    try:
        teacher.eval()
        taps = Taps(teacher, tap_names) if tap_names else None
        logits_mm = feats_mm = None
        try:
            for k in range(key.views):
                vx = make_view(x, key.augment, k, key.seed)
                for start_i in range(0, len(vx), batch_size):
                    xb = vx[start_i : start_i + batch_size].to(device).float().div_(255)
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with autocast_ctx or contextlib.nullcontext():
                        out = teacher(xb).float()
                    feats = [f.float() for f in taps.take()] if taps is not None else []
                    if logits_mm is None:
                        shape = (key.views, len(x), out.shape[1])
                        logits_mm = np.lib.format.open_memmap(tmp / "logits.npy", "w+", np.float16, shape)
                        feats_mm = [
                            np.lib.format.open_memmap(
                                tmp / f"feat_{j}.npy", "w+", np.float16, (key.views, len(x), *f.shape[1:])
                            )
                            for j, f in enumerate(feats)
                        ]
                    stop = start_i + len(xb)
                    logits_mm[k, start_i:stop] = out.cpu().numpy().astype(np.float16)
                    for j, f in enumerate(feats):
                        feats_mm[j][k, start_i:stop] = f.cpu().numpy().astype(np.float16)
        finally:
            if taps is not None:
                taps.close()
        for arr in [logits_mm, *(feats_mm or [])]:
            arr.flush()
        del logits_mm, feats_mm
        info = {
            "version": FORMAT_VERSION,
            "key": asdict(key),
            "num_images": len(x),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "build_seconds": round(time.perf_counter() - start, 2),
            **(meta or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(info, indent=2))
        if final.exists():  # built meanwhile by another run: same key, same content
            shutil.rmtree(tmp)
        else:
            publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    entry = open_entry(final)
    assert entry is not None
    return entry


def list_entries(root: str | Path) -> list[dict[str, Any]]:
    """Every complete entry under ``root`` with its size and last use, newest first."""
    rows = []
    for meta_file in Path(root).glob("*/meta.json"):
        meta = json.loads(meta_file.read_text())
        size = sum(p.stat().st_size for p in meta_file.parent.iterdir() if p.is_file())
        rows.append({"path": meta_file.parent, "meta": meta, "bytes": size, "last_used": meta_file.stat().st_mtime})
    return sorted(rows, key=lambda r: r["last_used"], reverse=True)


class CachedTeacher(nn.Module):
    """Reads a cache entry in place of running the teacher: rows by sample index, view by epoch."""

    takes_index = True

    def __init__(self, entry: CacheEntry) -> None:
        super().__init__()
        self.entry = entry
        self.view = 0

    def set_epoch(self, epoch: int) -> None:
        self.view = epoch % self.entry.num_views

    def _rows(self, arr: np.ndarray, index: torch.Tensor) -> torch.Tensor:
        rows = np.asarray(arr[self.view][np.sort(index.cpu().numpy())])
        order = np.argsort(np.argsort(index.cpu().numpy()))  # memmaps read fastest in sorted order
        return torch.from_numpy(rows[order]).to(index.device).float()

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self._rows(self.entry.logits, index)

    def feats(self, index: torch.Tensor) -> list[torch.Tensor]:
        return [self._rows(f, index) for f in self.entry.feats]
