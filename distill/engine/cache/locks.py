"""One builder per key: flocks on ``.<key>.lock`` files, across processes and machines sharing the folder."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("distill.engine.cache")


def _same_file(fd: int, path: Path) -> bool:
    try:
        now, held = os.stat(path), os.fstat(fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
    except FileNotFoundError:
        return False


def acquire(path: Path, *, wait: bool, create: bool, shared: bool = False) -> int | None:
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
def key_lock(root: Path, name: str) -> Iterator[None]:
    """Holds the key's lock: one builder per key, across processes and machines sharing the folder."""
    path = root / f".{name}.lock"
    fd = acquire(path, wait=False, create=True)
    if fd is None:
        log.info("teacher cache entry %s is being built by another process; waiting for it", name)
        fd = acquire(path, wait=True, create=True)
    try:
        yield
    finally:
        # removed while held, so no lock file outlives a build; a waiter that then locks the removed
        # file sees it gone and takes a fresh one (see acquire)
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def held_if_free(root: Path, name: str, shared: bool = False) -> Iterator[bool]:
    """True, holding the key's lock, when no builder holds it (a missing lock file: no builder either)."""
    fd = acquire(root / f".{name}.lock", wait=False, create=False, shared=shared)
    free = fd is not None or not (root / f".{name}.lock").exists()
    try:
        yield free
    finally:
        if fd is not None:
            os.close(fd)
