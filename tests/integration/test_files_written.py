"""What distill writes: modes the user's umask gives, and a full disk as one line with the last good file kept."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import torch

from distill.engine.checkpoint import load_state, save_state
from distill.errors import UserError
from tests.conftest import run_cli


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_a_runs_files_follow_the_umask(tmp_path, umask_022):
    from distill import api

    run = tmp_path / "run"
    api.run(
        "teacher",
        ["teacher=mlp", "dataset=digits", "trainer.epochs=1", "trainer.progress=off", "trainer.threads=2",
         f"paths.root={tmp_path / 'outputs'}", f"paths.output_dir={run}"],
    )  # fmt: skip
    modes = _modes(run)
    written = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/best.safetensors", "checkpoints/state.pt")
    for name in written:
        assert modes[name] == "0o644", (name, modes)
    assert {m for p, m in modes.items() if (run / p).is_dir()} == {"0o755"}, modes
    assert {m for p, m in modes.items() if (run / p).is_file()} == {"0o644"}, modes


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root with mount rights, as on this project's machines and CI)."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder: Path, leave: int) -> None:
    """Fills the disk of ``folder`` until about ``leave`` bytes are free."""
    import shutil

    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_full_disk_is_one_line_and_keeps_the_last_good_state(small_disk):
    path = small_disk / "checkpoints" / "state.pt"
    save_state(path, {"step": 1, "w": torch.zeros(1000)})
    _fill(small_disk, leave=64 << 10)
    with pytest.raises(UserError, match=f"no space left on device while writing {path}; the previous state.pt is kept"):
        save_state(path, {"step": 2, "w": torch.zeros(100_000)})  # 400 kB: does not fit
    assert load_state(path)["step"] == 1, "the last good state is intact"
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"], "no temporary file is left"


def test_a_run_on_a_full_disk_says_so_in_one_line(small_disk, tmp_path):
    """A run whose checkpoint does not fit: one line naming the file, exit 2, no traceback."""
    result = run_cli(
        "teacher", "teacher=mlp", "teacher.kwargs.hidden=[2048]", "dataset=digits", "trainer.epochs=1",
        "trainer.progress=off", f"paths.root={small_disk}", f"paths.output_dir={small_disk / 'run'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "no space left on device while writing" in lines[0] and str(small_disk / "run") in lines[0], lines[0]
