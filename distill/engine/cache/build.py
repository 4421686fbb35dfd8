"""Building an entry (the teacher run once over every view), publishing it whole, and looking one up."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill.engine.cache.entry import CacheEntry, DamagedEntry, array_names, discard, entry_dir, load_entry, open_entry
from distill.engine.cache.keys import _CHUNK, FORMAT_VERSION, CacheKey, view_batches, view_rows
from distill.engine.cache.locks import key_lock
from distill.engine.taps import Taps
from distill.errors import UserError
from distill.io import disk_full, publish

log = logging.getLogger("distill.engine.cache")


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


def _write_arrays(
    tmp: Path, key: CacheKey, teacher: nn.Module, x: torch.Tensor, batch_size: int, num_workers: int, **run: Any
) -> dict:
    """Fills ``tmp`` with the teacher's outputs on every view of ``x`` (streamed images decoded in
    ``num_workers`` processes); returns the arrays' shapes."""
    taps = Taps(teacher, key.taps) if key.taps else None
    arrays: list[np.memmap] = []
    try:
        for k in range(key.views):
            i = 0
            for xb in view_batches(x, key.augment, k, key.seed, batch_size, num_workers):
                outs = _run_teacher(teacher, taps, xb, **run)
                if not arrays:
                    arrays = [
                        np.lib.format.open_memmap(
                            tmp / f"{name}.npy", "w+", np.float16, (key.views, len(x), *t.shape[1:])
                        )
                        for name, t in zip(array_names(len(outs) - 1), outs)
                    ]
                for arr, t in zip(arrays, outs):
                    arr[k, i : i + len(t)] = t.cpu().numpy().astype(np.float16)
                i += len(xb)
    finally:
        if taps is not None:
            taps.close()
    for arr in arrays:
        arr.flush()
    return {name: list(arr.shape) for name, arr in zip(array_names(len(arrays) - 1), arrays)}


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
        return load_entry(final)
    entry = load_entry(final)
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
    num_workers: int = 0,
) -> CacheEntry:
    """Runs the teacher once over every view of ``x`` and stores its outputs under ``root``.

    One builder per key at a time: the others wait, then open its entry. A damaged entry in the way,
    or ``replace`` (an entry found to disagree with the teacher), is moved aside first.
    """
    if list(tap_names) != list(key.taps):
        raise ValueError(f"tap_names {tap_names} differ from the key's taps {key.taps}")
    final = entry_dir(root, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    with key_lock(final.parent, final.name):
        found = _current(final, replace)
        if found is not None:
            return found
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        try:
            teacher.eval()
            run = {"device": device, "channels_last": channels_last, "autocast_ctx": autocast_ctx}
            shapes = _write_arrays(tmp, key, teacher, x, batch_size, num_workers, **run)
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
    size = min(_CHUNK, len(x) - chunk * _CHUNK)
    local = np.sort(rng.choice(size, size=min(rows, size), replace=False))
    images = view_rows(x, key["augment"], k, key["seed"], chunk * _CHUNK + local)
    taps = Taps(teacher, key["taps"]) if key["taps"] else None
    was_training = teacher.training
    try:
        teacher.eval()
        live = _run_teacher(teacher, taps, images, device, channels_last, autocast_ctx)
    finally:
        teacher.train(was_training)
        if taps is not None:
            taps.close()
    rel = 0.01 if key["precision"] == "32" else 0.05
    names = array_names(len(entry.feats))
    for name, now, stored in zip(names, live, [entry.logits, *entry.feats]):
        cached = torch.from_numpy(np.asarray(stored[k][chunk * _CHUNK + local])).float()
        scale, diff = float(now.abs().max()), float((now.cpu() - cached).abs().max())
        if not diff <= rel * scale + 1e-3:  # `not <=`: a NaN is a mismatch too
            return f"{name} of view {k} off by {diff:.2e} at a scale of {scale:.2e}"
    return None


def lookup(
    root: str | Path, key: CacheKey, teacher: nn.Module, x: torch.Tensor, *, seed: int, check: bool = True, **run: Any
) -> tuple[CacheEntry | None, CacheEntry | None]:
    """The entry for ``key`` if it is whole and agrees with the live ``teacher`` on a few rows (see
    :func:`spot_check`; ``seed`` picks them, ``run`` says how to run the teacher), else None; second,
    an entry found wrong, for :func:`build_entry` to replace. Problems are logged, one line each.
    ``check=False``: the entry was checked against this teacher already (earlier in the same sweep)."""
    path = entry_dir(root, key)
    try:
        entry = open_entry(path)
    except DamagedEntry as e:
        log.warning("teacher cache entry %s is damaged (%s); rebuilding it", path, e)
        return None, None
    if entry is None:
        return None, None
    problem = spot_check(entry, teacher, x, seed=seed, **run) if check else None
    if problem:
        log.warning("teacher cache entry %s disagrees with the live teacher (%s); rebuilding it", path, problem)
        return None, entry
    return entry, None
