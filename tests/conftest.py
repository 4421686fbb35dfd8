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


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    """A LeNet-5 teacher trained on digits for 4 epochs, trained once for the whole session and
    shared by the tests that only read it (copy it with :func:`copy_run` to change it)."""
    from distill import api

    root = tmp_path_factory.mktemp("digits_teacher")
    run = root / "teacher"
    overrides = ["teacher=lenet5", "dataset=digits", "trainer.epochs=4", "sched.warmup_epochs=0", *FAST]
    api.run("teacher", [*overrides, f"paths.root={root}", f"paths.output_dir={run}"])
    return run


def copy_run(run: Path, to: Path) -> Path:
    """A copy of a run folder, for a test that changes it."""
    import shutil

    return Path(shutil.copytree(run, to))


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


def launch(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs ``python -m distill ARGS`` in a new process, as a user types it: for what is about the
    process boundary (signals, kills, torchrun, the README's commands, the exit of the interpreter)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "distill", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def run_cli(*args: str, cwd: Path, timeout: int | None = None) -> subprocess.CompletedProcess:
    """``distill ARGS`` through ``distill.cli.main`` in this process: the same parsing, checks, runs,
    sweeps and messages as the command, without a new interpreter's start-up (8 s of imports on 2
    cores). What is about the process itself goes through :func:`launch`. ``timeout`` is ignored
    (kept so a call reads like :func:`launch`)."""
    import contextlib
    import io

    from hydra.core.global_hydra import GlobalHydra

    from distill import cli

    out, err, code = io.StringIO(), io.StringIO(), 0
    old_cwd, old_argv, old_env = os.getcwd(), list(sys.argv), os.environ.get("HYDRA_FULL_ERROR")
    os.chdir(cwd)
    os.environ["HYDRA_FULL_ERROR"] = "0"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        if old_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = old_env
        GlobalHydra.instance().clear()
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().cfg = None  # as when the process ends: no run's Hydra settings linger
    return subprocess.CompletedProcess(["distill", *args], code, out.getvalue(), err.getvalue())
