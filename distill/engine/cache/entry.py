"""An entry on disk: reading it (memory-mapped), telling a damaged one, and serving it as a teacher."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill.engine.cache.keys import FORMAT_VERSION, CacheKey

log = logging.getLogger("distill.engine.cache")


class DamagedEntry(Exception):
    """An entry folder that cannot be read as its ``meta.json`` says; the message tells why."""


@dataclass
class CacheEntry:
    """An opened entry: memory-mapped arrays, read lazily row by row."""

    path: Path
    meta: dict[str, Any]
    logits: np.ndarray
    feats: list[np.ndarray]
    built: bool = False  # built by this process (not found, nor finished by another builder meanwhile)

    @property
    def num_views(self) -> int:
        return int(self.logits.shape[0])


def entry_dir(root: str | Path, key: CacheKey) -> Path:
    return Path(root) / key.digest()


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        raise DamagedEntry("meta.json is missing") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DamagedEntry(f"meta.json is unreadable ({type(e).__name__})") from None
    if not isinstance(meta, dict) or meta.get("version") != FORMAT_VERSION:
        raise DamagedEntry(f"meta.json is not an entry of format version {FORMAT_VERSION}")
    key = meta.get("key")
    missing = [f.name for f in fields(CacheKey) if f.name not in key] if isinstance(key, dict) else ["all"]
    if missing:
        raise DamagedEntry(f"meta.json's key lacks {', '.join(missing)} (an older distill wrote it)")
    try:
        digest = CacheKey(**key).digest()
    except (TypeError, ValueError):
        raise DamagedEntry("meta.json's key has fields this distill does not know") from None
    if digest != path.name:
        raise DamagedEntry("meta.json's key does not hash to the folder's name")
    ok = isinstance(meta.get("num_images"), int) and isinstance(key["views"], int) and isinstance(key["taps"], list)
    if not ok:
        raise DamagedEntry("meta.json's num_images, views or taps are not what an entry holds")
    return meta


def array_names(n_feats: int) -> list[str]:
    return ["logits", *(f"feat_{j}" for j in range(n_feats))]


def _load_array(path: Path, name: str, meta: dict[str, Any]) -> np.ndarray:
    """One memory-mapped array of an entry, checked against the shape ``meta`` gives it."""
    try:
        arr = np.load(path / f"{name}.npy", mmap_mode="r")
    except FileNotFoundError:
        raise DamagedEntry(f"{name}.npy is missing") from None
    except (OSError, ValueError, EOFError) as e:  # a truncated file fails to map ("mmap length ...")
        why = (str(e).splitlines() or [type(e).__name__])[0][:80]
        raise DamagedEntry(f"{name}.npy is truncated or unreadable ({why})") from None
    shapes = meta.get("shapes")
    expected = shapes.get(name) if isinstance(shapes, dict) else None
    lead = (meta["key"]["views"], meta["num_images"])
    if arr.dtype != np.float16 or arr.shape[:2] != lead or (expected is not None and list(arr.shape) != expected):
        raise DamagedEntry(
            f"{name}.npy holds {arr.dtype} {tuple(arr.shape)}, meta.json says float16 {expected or lead}"
        )
    return arr


def load_entry(path: Path) -> CacheEntry:
    """The entry in ``path``; raises :class:`DamagedEntry` when anything disagrees with its meta.json."""
    meta = _read_meta(path)
    logits, *feats = [_load_array(path, n, meta) for n in array_names(len(meta["key"]["taps"]))]
    return CacheEntry(path, meta, logits, feats)


def open_entry(path: Path) -> CacheEntry | None:
    """The entry in ``path``, or None when there is none; raises :class:`DamagedEntry` for a damaged one."""
    if not path.is_dir():
        return None
    entry = load_entry(path)
    with contextlib.suppress(OSError):  # a teammate's entry may be read-only to us
        os.utime(path / "meta.json")  # last used, for `distill cache ls`
    return entry


def discard(path: Path) -> None:
    """Deletes an entry folder without a reader ever seeing it half-deleted: renamed aside, then deleted."""
    aside = path.parent / f".{path.name}.discarded-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # discarded meanwhile by another process
        return
    shutil.rmtree(aside, ignore_errors=True)


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
