"""Cache entries that went wrong: damaged files, entries that disagree with the teacher, what a killed
build leaves, the folder's permissions and a cache.dir that cannot hold the cache."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import distill
from distill.engine.cache import (
    CacheKey,
    DamagedEntry,
    augment_code,
    build_entry,
    cache_dir_problem,
    clear_unfinished,
    list_entries,
    list_unfinished,
    lookup,
    open_entry,
    spot_check,
)
from distill.engine.cache import build as cache_build

TAP = "1"  # the Linear layer of the teacher below


def _teacher(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))


def _images(n: int = 300) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _key(**changes) -> CacheKey:
    key = CacheKey("t" * 64, "i" * 64, {"name": "digits"}, "shift", views=2, seed=3, taps=[TAP])
    return dataclasses.replace(key, **changes)


def _build(root: Path, teacher: torch.nn.Module | None = None, **kwargs):
    key = kwargs.pop("key", _key())
    return build_entry(root, key, teacher or _teacher(), key.taps, _images(), device=torch.device("cpu"), **kwargs)


def _dot_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_the_key_covers_the_versions_and_the_augmentation_code():
    key = _key()
    assert key.distill_version == distill.__version__ and key.torch_version == str(torch.__version__)
    assert key.augment_code == augment_code() and len(key.augment_code) == 12
    for change in ({"distill_version": "0.0.1"}, {"torch_version": "1.0"}, {"augment_code": "0" * 12}):
        assert _key(**change).digest() != key.digest(), change


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _reshape(path: Path) -> None:
    arr = np.load(path)
    np.save(path, arr[:, :-1])  # one image short of what meta.json says


DAMAGE = {
    "truncated logits": (lambda e: _truncate(e / "logits.npy"), "logits.npy is truncated"),
    "missing feature": (lambda e: (e / "feat_0.npy").unlink(), "feat_0.npy is missing"),
    "short logits": (lambda e: _reshape(e / "logits.npy"), "logits.npy holds float16 (2, 299, 10)"),
    "garbled meta": (lambda e: (e / "meta.json").write_text('{"version": 1, "key": '), "meta.json is unreadable"),
    "missing meta": (lambda e: (e / "meta.json").unlink(), "meta.json is missing"),
    "edited key": (
        lambda e: (e / "meta.json").write_text(
            json.dumps({**json.loads((e / "meta.json").read_text()), "key": {**_key(seed=4).__dict__}})
        ),
        "does not hash to the folder's name",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_entry_is_listed_reported_once_and_rebuilt(damage, tmp_path, caplog):
    harm, reason = DAMAGE[damage]
    first = _build(tmp_path)
    good = np.array(first.logits)
    del first
    path = _key().digest()
    harm(tmp_path / path)

    (row,) = list_entries(tmp_path)
    assert row["path"].name == path and reason in row["problem"]
    with pytest.raises(DamagedEntry, match=re.escape(reason)):
        open_entry(tmp_path / path)
    with caplog.at_level(logging.INFO, logger="distill.engine.cache"):
        assert lookup(tmp_path, _key(), _teacher(), _images(), seed=0, device=torch.device("cpu")) == (None, None)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "damaged" in line and reason in line and "rebuilding" in line

    again = _build(tmp_path)
    assert again.built and np.array_equal(np.array(again.logits), good)
    assert [r["problem"] for r in list_entries(tmp_path)] == [None]
    assert _dot_files(tmp_path) == [], "the damaged folder is gone, and so are the build's temporaries"


def test_a_hit_that_disagrees_with_the_teacher_is_rebuilt_and_a_fresh_rebuild_is_kept(tmp_path, caplog):
    cpu = torch.device("cpu")
    entry = _build(tmp_path)
    assert spot_check(entry, _teacher(), _images(), seed=1, device=cpu) is None
    assert lookup(tmp_path, _key(), _teacher(), _images(), seed=1, device=cpu)[0] is not None
    other = _teacher(seed=1)  # a different teacher behind the same key (a stale or tampered entry)
    assert "logits of view" in spot_check(entry, other, _images(), seed=1, device=cpu)

    logits = np.load(entry.path / "logits.npy", mmap_mode="r+")
    logits[:] = logits[:, ::-1]  # rows scrambled: every image gets another image's outputs
    logits.flush()
    del logits
    with caplog.at_level(logging.WARNING, logger="distill.engine.cache"):
        found, wrong = lookup(tmp_path, _key(), _teacher(), _images(), seed=1, device=cpu)
    assert found is None and wrong is not None
    (line,) = [r.getMessage() for r in caplog.records]
    assert "disagrees with the live teacher" in line and "rebuilding" in line

    rebuilt = _build(tmp_path, replace=wrong)
    assert rebuilt.built and rebuilt.meta["build_id"] != wrong.meta["build_id"]
    assert spot_check(rebuilt, _teacher(), _images(), seed=1, device=cpu) is None
    # A second run that found the same wrong entry, and waited for the lock, keeps the fresh one.
    late = _build(tmp_path, replace=wrong)
    assert not late.built and late.meta["build_id"] == rebuilt.meta["build_id"]


def test_a_lost_rename_race_reads_the_winners_entry(tmp_path):
    """Where two builders both wrote an entry (a filesystem whose locks are not shared), the loser's
    rename finds the folder taken: it deletes its copy and opens the winner's."""
    winner = _build(tmp_path)
    loser = tmp_path / f".{winner.path.name}.loser"
    shutil.copytree(winner.path, loser)
    entry = cache_build._publish_entry(loser, winner.path)
    assert entry.path == winner.path and not entry.built and not loser.exists()


def _killed_build(root: Path) -> Path:
    """What a build killed mid-way leaves: a temporary folder with half-written arrays and its lock
    file (no longer held: the kernel dropped the lock with the process)."""
    name = _key().digest()
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    np.lib.format.open_memmap(tmp / "logits.npy", "w+", np.float16, (2, 300, 10)).flush()
    (root / f".{name}.lock").touch()
    return tmp


def test_unfinished_builds_are_listed_and_only_orphans_are_removed(tmp_path):
    import fcntl

    orphan = _killed_build(tmp_path)
    (row,) = list_unfinished(tmp_path)
    assert row["path"] == orphan and not row["live"] and row["bytes"] > 6000
    # A live builder holds the key's lock: its folder is listed as live and left alone.
    with open(tmp_path / f".{_key().digest()}.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert [r["live"] for r in list_unfinished(tmp_path)] == [True]
        assert clear_unfinished(tmp_path) == (0, 0) and orphan.is_dir()
    assert clear_unfinished(tmp_path, prefix="ffff") == (0, 0) and orphan.is_dir()
    count, freed = clear_unfinished(tmp_path, prefix=_key().digest()[:4])
    assert count == 1 and freed == row["bytes"]
    assert list(tmp_path.iterdir()) == [], "the orphan and its stale lock file are gone"


def test_a_build_after_a_killed_one_succeeds(tmp_path):
    _killed_build(tmp_path)
    entry = _build(tmp_path)
    assert entry.built and len(list_unfinished(tmp_path)) == 1  # the orphan stays until `cache clear`


@pytest.mark.parametrize("umask, folder, file", [(0o022, 0o755, 0o644), (0o002, 0o775, 0o664)])
def test_an_entry_gets_the_users_umask(umask, folder, file, tmp_path):
    old = os.umask(umask)
    try:
        entry = _build(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(entry.path.stat().st_mode) == folder
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in entry.path.iterdir()}
    assert modes == {"logits.npy": file, "feat_0.npy": file, "meta.json": file}


def test_cache_dir_that_is_a_file_or_under_a_file(tmp_path):
    file = tmp_path / "cache"
    file.write_text("")
    assert cache_dir_problem(file) == f"cache.dir={file} is a file, not a folder"
    assert "is a file" in cache_dir_problem(file / "sub")
    assert cache_dir_problem(file, write=False, name="dir").startswith("dir=")
    assert cache_dir_problem(tmp_path / "new" / "cache") is None  # made on first use
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == [file], "the write test leaves nothing"


def _problem_as_a_user(folder: Path) -> str:
    """cache_dir_problem(folder) in a forked child that is not root (root may write into a 0555 folder)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, check, report through the pipe, exit without pytest's cleanup
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            os.write(write, str(cache_dir_problem(folder)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    return answer


def test_cache_dir_that_cannot_be_written(tmp_path):
    """Tried for real, as a user who is not root."""
    folder = Path(tempfile.mkdtemp())  # not under tmp_path: pytest's folders are 0700, closed to other users
    try:
        os.chmod(folder, 0o555)
        assert _problem_as_a_user(folder) == f"cache.dir={folder} is not writable (Permission denied)"
        assert _problem_as_a_user(folder / "new") == f"cache.dir={folder / 'new'} is not writable (Permission denied)"
        assert cache_dir_problem(folder, write=False) is None  # ls and verify only read
        os.chmod(folder, 0o777)
        assert _problem_as_a_user(folder) == "None"  # the control: the same check passes where it may write
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)
