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
training images themselves (digest of the uint8 tensor), the dataset config, the augmentation and
the code that draws it, K and the seed, the tapped layers, the teacher's precision, and the
versions of distill and torch. A changed teacher, image, transform or seed gives a new key, so a
stale entry is never read; a hit is still spot-checked against the live teacher (:func:`lookup`).

An entry appears whole or not at all: written in a temporary folder ``.<key>.<random>``, then
renamed, by one builder per key at a time (``.<key>.lock``, an flock; the others wait and read its
entry). An entry that cannot be read as its ``meta.json`` describes is *damaged*: reported, moved
aside (renamed, then deleted) and rebuilt. Folders and files get the user's umask, not
``mkdtemp``'s 0700, so a team can share one cache (:func:`distill.io.publish`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import inspect
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import distill
from distill.data import augment as augment_module
from distill.data.augment import augment_batch
from distill.engine.taps import Taps
from distill.errors import UserError
from distill.io import disk_full, publish

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_CHUNK = 256
_ENTRY = re.compile(r"[0-9a-f]{24}")
_TEMP = re.compile(r"\.([0-9a-f]{24})\..+")  # a build's temporary folder, or an entry being deleted
_LOCK = re.compile(r"\.([0-9a-f]{24})\.lock")


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


def _array_names(n_feats: int) -> list[str]:
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


def _load(path: Path) -> CacheEntry:
    """The entry in ``path``; raises :class:`DamagedEntry` when anything disagrees with its meta.json."""
    meta = _read_meta(path)
    logits, *feats = [_load_array(path, n, meta) for n in _array_names(len(meta["key"]["taps"]))]
    return CacheEntry(path, meta, logits, feats)


def open_entry(path: Path) -> CacheEntry | None:
    """The entry in ``path``, or None when there is none; raises :class:`DamagedEntry` for a damaged one."""
    if not path.is_dir():
        return None
    entry = _load(path)
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


def _same_file(fd: int, path: Path) -> bool:
    try:
        now, held = os.stat(path), os.fstat(fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
    except FileNotFoundError:
        return False


def _acquire(path: Path, *, wait: bool, create: bool, shared: bool = False) -> int | None:
    """A descriptor holding the flock of ``path``, or None: held by another process (when not waiting),
    or no such file (when not creating). A lock file `distill cache clear` removed meanwhile (it holds
    the lock while it does) is no lock any more: the locked file is checked to still be ``path``."""
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | (os.O_CREAT if create else 0), 0o666)  # read-only: shared caches
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
            if _same_file(fd, path):
                return fd
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def _key_lock(root: Path, name: str) -> Iterator[None]:
    """Holds the key's lock: one builder per key, across processes and machines sharing the folder."""
    path = root / f".{name}.lock"
    fd = _acquire(path, wait=False, create=True)
    if fd is None:
        log.info("teacher cache entry %s is being built by another process; waiting for it", name)
        fd = _acquire(path, wait=True, create=True)
    try:
        yield
    finally:
        # removed while held, so no lock file outlives a build; a waiter that then locks the removed
        # file sees it gone and takes a fresh one (see _acquire)
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _held_if_free(root: Path, name: str, shared: bool = False) -> Iterator[bool]:
    """True, holding the key's lock, when no builder holds it (a missing lock file: no builder either)."""
    fd = _acquire(root / f".{name}.lock", wait=False, create=False, shared=shared)
    free = fd is not None or not (root / f".{name}.lock").exists()
    try:
        yield free
    finally:
        if fd is not None:
            os.close(fd)


def _run_teacher(
    teacher: nn.Module,
    taps: Taps | None,
    xb: torch.Tensor,
    device: torch.device,
    channels_last: bool,
    autocast_ctx: Any,
) -> list[torch.Tensor]:
    """The teacher's logits and tapped features (float32) on a uint8 batch, as the cache stores them."""
    xb = xb.to(device).float().div_(255)
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with autocast_ctx or contextlib.nullcontext():
        out = teacher(xb).float()
    return [out, *([f.float() for f in taps.take()] if taps is not None else [])]


def _write_arrays(tmp: Path, key: CacheKey, teacher: nn.Module, x: torch.Tensor, batch_size: int, **run: Any) -> dict:
    """Fills ``tmp`` with the teacher's outputs on every view of ``x``; returns the arrays' shapes."""
    taps = Taps(teacher, key.taps) if key.taps else None
    arrays: list[np.memmap] = []
    try:
        for k in range(key.views):
            vx = make_view(x, key.augment, k, key.seed)
            for i in range(0, len(vx), batch_size):
                outs = _run_teacher(teacher, taps, vx[i : i + batch_size], **run)
                if not arrays:
                    arrays = [
                        np.lib.format.open_memmap(
                            tmp / f"{name}.npy", "w+", np.float16, (key.views, len(x), *t.shape[1:])
                        )
                        for name, t in zip(_array_names(len(outs) - 1), outs)
                    ]
                for arr, t in zip(arrays, outs):
                    arr[k, i : i + len(t)] = t.cpu().numpy().astype(np.float16)
    finally:
        if taps is not None:
            taps.close()
    for arr in arrays:
        arr.flush()
    return {name: list(arr.shape) for name, arr in zip(_array_names(len(arrays) - 1), arrays)}


def _current(final: Path, replace: CacheEntry | None) -> CacheEntry | None:
    """The entry at ``final`` unless it is damaged or is ``replace`` (found wrong); those are discarded.
    A ``replace`` rebuilt meanwhile by another process is that process's new entry, and kept."""
    try:
        entry = open_entry(final)
    except DamagedEntry:  # reported by whoever looked it up
        entry = None
        discard(final)
    if entry is not None and replace is not None and entry.meta.get("build_id") == replace.meta.get("build_id"):
        entry = None
        discard(final)
    return entry


def _publish_entry(tmp: Path, final: Path) -> CacheEntry:
    try:
        publish(tmp, final)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # another builder won the rename (possible only where the lock is not shared): its entry is as good
        shutil.rmtree(tmp, ignore_errors=True)
        return _load(final)
    entry = _load(final)
    entry.built = True
    return entry


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
    replace: CacheEntry | None = None,
) -> CacheEntry:
    """Runs the teacher once over every view of ``x`` and stores its outputs under ``root``.

    One builder per key at a time: the others wait, then open its entry. A damaged entry in the way,
    or ``replace`` (an entry found to disagree with the teacher), is moved aside first.
    """
    if list(tap_names) != list(key.taps):
        raise ValueError(f"tap_names {tap_names} differ from the key's taps {key.taps}")
    final = entry_dir(root, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    with _key_lock(final.parent, final.name):
        found = _current(final, replace)
        if found is not None:
            return found
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        try:
            teacher.eval()
            run = {"device": device, "channels_last": channels_last, "autocast_ctx": autocast_ctx}
            shapes = _write_arrays(tmp, key, teacher, x, batch_size, **run)
            info = {
                "version": FORMAT_VERSION,
                "key": asdict(key),
                "num_images": len(x),
                "shapes": shapes,
                "build_id": uuid.uuid4().hex,
                "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                "build_seconds": round(time.perf_counter() - start, 2),
                **(meta or {}),
            }
            (tmp / "meta.json").write_text(json.dumps(info, indent=2))
            return _publish_entry(tmp, final)  # with the umask's modes, not mkdtemp's 0700: caches are shared
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if disk_full(e, final.parent):
                raise UserError(
                    f"no space left on device while building the teacher cache in {final.parent}; free some "
                    "(`distill cache clear`), lower cache.views or run the teacher live (cache.enabled=false)"
                ) from None
            raise


@torch.no_grad()
def spot_check(
    entry: CacheEntry,
    teacher: nn.Module,
    x: torch.Tensor,
    *,
    seed: int,
    device: torch.device,
    rows: int = 4,
    channels_last: bool = False,
    autocast_ctx: Any = None,
) -> str | None:
    """Recomputes ``rows`` random rows of one random view with the live teacher; what disagrees, or None.

    Only the chunk of the view holding those rows is drawn, so a check costs one small batch. Stored
    values may differ from live ones by float16's rounding (5e-4 of their scale) and by another
    backend's or batch size's arithmetic; 1% of each array's scale (5% under mixed precision) leaves
    room for both, and still catches another teacher, other views or scrambled rows.
    """
    key = entry.meta["key"]
    rng = np.random.default_rng(seed)
    k, chunk = int(rng.integers(entry.num_views)), int(rng.integers(math.ceil(len(x) / _CHUNK)))
    images = x[chunk * _CHUNK : (chunk + 1) * _CHUNK]
    if key["augment"] != "none":
        images = _view_chunk(x, key["augment"], k, key["seed"], chunk)
    local = np.sort(rng.choice(len(images), size=min(rows, len(images)), replace=False))
    taps = Taps(teacher, key["taps"]) if key["taps"] else None
    was_training = teacher.training
    try:
        teacher.eval()
        live = _run_teacher(teacher, taps, images[torch.from_numpy(local)], device, channels_last, autocast_ctx)
    finally:
        teacher.train(was_training)
        if taps is not None:
            taps.close()
    rel = 0.01 if key["precision"] == "32" else 0.05
    names = _array_names(len(entry.feats))
    for name, now, stored in zip(names, live, [entry.logits, *entry.feats]):
        cached = torch.from_numpy(np.asarray(stored[k][chunk * _CHUNK + local])).float()
        scale, diff = float(now.abs().max()), float((now.cpu() - cached).abs().max())
        if not diff <= rel * scale + 1e-3:  # `not <=`: a NaN is a mismatch too
            return f"{name} of view {k} off by {diff:.2e} at a scale of {scale:.2e}"
    return None


def lookup(
    root: str | Path, key: CacheKey, teacher: nn.Module, x: torch.Tensor, *, seed: int, **run: Any
) -> tuple[CacheEntry | None, CacheEntry | None]:
    """The entry for ``key`` if it is whole and agrees with the live ``teacher`` on a few rows (see
    :func:`spot_check`; ``seed`` picks them, ``run`` says how to run the teacher), else None; second,
    an entry found wrong, for :func:`build_entry` to replace. Problems are logged, one line each."""
    path = entry_dir(root, key)
    try:
        entry = open_entry(path)
    except DamagedEntry as e:
        log.warning("teacher cache entry %s is damaged (%s); rebuilding it", path, e)
        return None, None
    if entry is None:
        return None, None
    problem = spot_check(entry, teacher, x, seed=seed, **run)
    if problem:
        log.warning("teacher cache entry %s disagrees with the live teacher (%s); rebuilding it", path, problem)
        return None, entry
    return entry, None


def _size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):  # deleted meanwhile
            total += p.stat().st_size if p.is_file() else 0
    return total


def list_entries(root: str | Path) -> list[dict[str, Any]]:
    """Every entry folder under ``root``, last used first: path, meta ({} when unreadable), bytes,
    last use, and ``problem``: why it is damaged, or None."""
    root = Path(root)
    rows = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not (_ENTRY.fullmatch(path.name) and path.is_dir()):
            continue
        try:
            meta, problem = _load(path).meta, None
        except DamagedEntry as e:
            meta, problem = {}, str(e)
        stamp = path / "meta.json" if (path / "meta.json").is_file() else path
        with contextlib.suppress(FileNotFoundError):  # unless deleted meanwhile
            last = stamp.stat().st_mtime
            rows.append({"path": path, "meta": meta, "bytes": _size(path), "last_used": last, "problem": problem})
    return sorted(rows, key=lambda r: r["last_used"], reverse=True)


def list_unfinished(root: str | Path) -> list[dict[str, Any]]:
    """Temporary folders of builds (and of entries being deleted): ``live`` while their process holds
    the key's lock; the others were left by a killed process."""
    root = Path(root)
    rows = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        match = _TEMP.fullmatch(path.name)
        if match and path.is_dir():
            with _held_if_free(root, match.group(1), shared=True) as free:
                rows.append({"path": path, "key": match.group(1), "bytes": _size(path), "live": not free})
    return rows


def clear_unfinished(root: str | Path, prefix: str = "") -> tuple[int, int]:
    """Removes what killed builds left for keys starting with ``prefix``: temporary folders no live
    process holds (each removed under its key's lock) and lock files no one holds. Returns (folders, bytes)."""
    root = Path(root)
    count = freed = 0
    for row in list_unfinished(root):
        if row["key"].startswith(prefix) and not row["live"]:
            with _held_if_free(root, row["key"]) as free:
                if free and row["path"].is_dir():
                    shutil.rmtree(row["path"], ignore_errors=True)
                    count, freed = count + 1, freed + row["bytes"]
    for lock in root.glob(".*.lock") if root.is_dir() else []:
        match = _LOCK.fullmatch(lock.name)
        if match and match.group(1).startswith(prefix):
            fd = _acquire(lock, wait=False, create=False)
            if fd is not None:  # unlinked while held: a builder that locked it meanwhile sees it gone and retries
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                os.close(fd)
    return count, freed


def cache_dir_problem(path: str | Path, write: bool = True, name: str = "cache.dir") -> str | None:
    """Why ``path`` cannot hold the cache, or None; ``name`` is its config key. A missing folder is judged
    by the nearest existing folder above it, where it would be made. Writing is tried for real (as root,
    os.access says yes even to a read-only mount); ``write=False`` only checks that it is not a file."""
    path = Path(path)
    there = path
    while not there.exists() and there != there.parent:
        there = there.parent
    if not there.is_dir():
        where = "" if there == path else f" (its parent {there} is a file)"
        return f"{name}={path} is a file, not a folder{where}"
    if not write:
        return None
    try:
        fd, probe = tempfile.mkstemp(dir=there, prefix=".distill-write-test-")
    except OSError as e:
        return f"{name}={path} is not writable ({e.strerror or e})"
    os.close(fd)
    os.unlink(probe)
    return None


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
