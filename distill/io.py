"""Files appear whole or not at all, with the permissions the user's umask gives, and a full disk is
one clear line.

``tempfile`` creates files 0600 and folders 0700 whatever the umask: fine while they are being
written, wrong once published (a teammate on a shared cluster could not read a run or share the
cache). :func:`publish` gives them the modes an ordinary ``open``/``mkdir`` would have.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from distill.errors import UserError


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it to read it back
    would briefly give files made meanwhile by other threads the wrong mode)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def apply_umask(path: str | Path) -> None:
    """Gives ``path`` (a file, or a folder and everything in it) the modes the umask asks for."""
    mask = umask()
    path = Path(path)
    items = [path] if not path.is_dir() else [path, *path.rglob("*")]
    for p in items:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Moves a finished temporary file (or folder of files) into place: modes set by the umask, contents
    fsynced, then renamed, then the folder's entry fsynced, so a crash leaves the old file or the new one."""
    tmp, path = Path(tmp), Path(path)
    apply_umask(tmp)
    for f in [tmp] if tmp.is_file() else [p for p in tmp.rglob("*") if p.is_file()]:
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    return path


def disk_full(error: BaseException, folder: Path) -> bool:
    """Whether ``error`` (raised while writing into ``folder``) means the disk or quota is full.
    torch.save reports it as a RuntimeError ("enforce fail at inline_container.cc"), without errno."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, RuntimeError):
        try:
            return shutil.disk_usage(folder).free < 1 << 20
        except OSError:
            return False
    return False


def atomic_write(path: str | Path, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Writes a whole file or nothing: temporary file, flush, fsync, rename. ``data`` may be a
    function that writes into the open file (so a large file needs no copy in memory first).

    Raises:
        UserError: the disk is full (the file as it was before is kept).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
        publish(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if disk_full(e, path.parent):
            kept = f"; the previous {path.name} is kept" if path.exists() else ""
            raise UserError(f"no space left on device while writing {path}{kept}") from None
        raise
    return path
