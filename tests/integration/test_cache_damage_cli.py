"""The teacher cache when something went wrong, as a user meets it: a damaged entry, a killed build,
a cache.dir that cannot hold the cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.test_cache_cli import RUN, _entries, _summaries, _train_teacher

# A build that dies on its third batch, as one killed by the OOM killer or a cluster's scheduler does.
KILLED_BUILD = """
import os, signal, sys, torch
from distill.engine.cache import CacheKey, build_entry
teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
calls = []
def die_on_the_third_batch(*_):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
teacher.register_forward_hook(die_on_the_third_batch)
key = CacheKey("t" * 64, "i" * 64, {"name": "digits"}, "none", views=1, seed=0)
x = torch.zeros(400, 1, 8, 8, dtype=torch.uint8)
build_entry(sys.argv[1], key, teacher, [], x, device=torch.device("cpu"), batch_size=64)
"""


def _one_error_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_damaged_entry_is_rebuilt_by_train_and_seen_by_ls_verify_clear(tmp_path):
    teacher = _train_teacher(tmp_path)
    assert run_cli("train", f"teacher.checkpoint={teacher}", *RUN, cwd=tmp_path).returncode == 0
    (entry,) = _entries(tmp_path)
    logits = entry / "logits.npy"
    logits.write_bytes(logits.read_bytes()[:-100])  # truncated: this used to crash every later run

    result = run_cli("train", f"teacher.checkpoint={teacher}", *RUN, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = sorted((tmp_path / "outputs" / "train").glob("*/*/train.log"))[-1]  # unwrapped, unlike the console
    said = [ln for ln in log.read_text().splitlines() if " is damaged (" in ln]
    assert len(said) == 1 and "logits.npy is truncated" in said[0] and "rebuilding" in said[0], said
    first, second = _summaries(tmp_path)
    assert second["teacher_cache"]["status"] == "built" and Path(second["teacher_cache"]["path"]).name == entry.name
    assert second["test_acc"] == first["test_acc"], "the rebuilt entry holds what the first one did"
    assert [p.name for p in (tmp_path / "outputs" / "cache").iterdir() if p.name.startswith(".")] == []

    (entry / "meta.json").write_text("{not json")
    result = run_cli("cache", "ls", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert entry.name in result.stdout and "damaged: meta.json is unreadable" in result.stdout
    result = run_cli("cache", "verify", cwd=tmp_path)
    assert "1 of 1 cache entries failed" in _one_error_line(result) and "damaged" in result.stdout
    result = run_cli("cache", "clear", f"entry={entry.name[:6]}", cwd=tmp_path)
    assert result.returncode == 0 and "removed 1 cache entries" in result.stdout, result.stderr
    assert not entry.exists() and not _entries(tmp_path)


def test_a_killed_build_is_listed_and_cleared(tmp_path):
    cache = tmp_path / "cache"
    killed = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(cache)], capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (orphan,) = [p for p in cache.iterdir() if p.is_dir()]
    assert orphan.name.startswith(".") and (orphan / "logits.npy").is_file()

    result = run_cli("cache", "ls", f"dir={cache}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert orphan.name in result.stdout and "unfinished build" in result.stdout
    assert "0 entries (0 damaged), 1 unfinished builds" in " ".join(result.stdout.split())  # the title may wrap
    result = run_cli("cache", "clear", f"dir={cache}", cwd=tmp_path)
    assert result.returncode == 0 and "1 unfinished builds" in result.stdout, result.stderr
    assert list(cache.iterdir()) == [], "the temporary folder and its lock file are gone"


def test_a_cache_dir_that_is_a_file_is_one_line(tmp_path):
    file = tmp_path / "not_a_folder"
    file.write_text("")
    result = run_cli("train", "student=mlp", "teacher=lenet5", f"cache.dir={file}", cwd=tmp_path)
    assert f"cache.dir={file} is a file, not a folder" in _one_error_line(result)
    for action in ("ls", "verify", "clear"):
        result = run_cli("cache", action, f"dir={file}", cwd=tmp_path)
        assert f"dir={file} is a file, not a folder" in _one_error_line(result), action
    result = run_cli("cache", "ls", f"dir={tmp_path / 'none_yet'}", cwd=tmp_path)
    assert result.returncode == 0 and "no entries" in result.stdout, result.stderr


@pytest.mark.parametrize("prefix", ["788e91", "0123", "1e5"])
def test_a_key_prefix_that_looks_like_a_number_stays_text(prefix, tmp_path):
    """Hydra would read entry=788e91 as 7.88e+93 and entry=0123 as 123: the prefix must reach the cache as typed."""
    cache = tmp_path / "cache"
    (cache / f"{prefix}{'0' * (24 - len(prefix))}").mkdir(parents=True)
    result = run_cli("cache", "clear", f"entry={prefix}", f"dir={cache}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(cache.iterdir()), "the entry with that prefix was removed"
