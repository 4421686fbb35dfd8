"""What `distill cache ls | verify | clear` sees: entries, unfinished builds, whether a folder can hold a cache."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from distill.engine.cache.entry import DamagedEntry, load_entry
from distill.engine.cache.locks import acquire, held_if_free

log = logging.getLogger("distill.engine.cache")

_ENTRY = re.compile(r"[0-9a-f]{24}")
_TEMP = re.compile(r"\.([0-9a-f]{24})\..+")  # a build's temporary folder, or an entry being deleted
_LOCK = re.compile(r"\.([0-9a-f]{24})\.lock")


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
            meta, problem = load_entry(path).meta, None
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
            with held_if_free(root, match.group(1), shared=True) as free:
                rows.append({"path": path, "key": match.group(1), "bytes": _size(path), "live": not free})
    return rows


def clear_unfinished(root: str | Path, prefix: str = "") -> tuple[int, int]:
    """Removes what killed builds left for keys starting with ``prefix``: temporary folders no live
    process holds (each removed under its key's lock) and lock files no one holds. Returns (folders, bytes)."""
    root = Path(root)
    count = freed = 0
    for row in list_unfinished(root):
        if row["key"].startswith(prefix) and not row["live"]:
            with held_if_free(root, row["key"]) as free:
                if free and row["path"].is_dir():
                    shutil.rmtree(row["path"], ignore_errors=True)
                    count, freed = count + 1, freed + row["bytes"]
    for lock in root.glob(".*.lock") if root.is_dir() else []:
        match = _LOCK.fullmatch(lock.name)
        if match and match.group(1).startswith(prefix):
            fd = acquire(lock, wait=False, create=False)
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
