"""Shared fixtures: configs composed from the shipped conf/, runs written under tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import distill.stages  # noqa: F401  (registers torchvision models in the ConfigStore)
from distill import config_dir

# Small, fast settings for runs in tests: tiny models, 2 threads, no progress bar.
FAST = ["trainer.threads=2", "trainer.progress=off"]


@pytest.fixture
def make_cfg(tmp_path: Path):
    """Composes a stage's config with overrides; runs go under tmp_path/outputs."""

    def _make(stage: str, overrides: list[str] = (), run_dir: Path | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name=stage, overrides=[f"paths.root={tmp_path / 'outputs'}", *overrides])
        cfg.paths.output_dir = str(run_dir or tmp_path / "outputs" / stage / "run")
        return cfg

    yield _make
    GlobalHydra.instance().clear()


def run_cli(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs ``distill ARGS`` in a subprocess (the real CLI, as a user types it)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "distill", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
