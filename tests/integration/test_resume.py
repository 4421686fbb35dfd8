"""A run killed at random moments (SIGKILL), stopped politely (SIGTERM) and resumed ends with exactly
the metrics of the same run left alone."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.engine.checkpoint import load_state
from tests.conftest import DIGITS, FAST, outputs_root, run_cli

# CRD keeps memory banks (loss-function state) and draws negatives from the global RNG; dropout in
# the MLP draws from it too: a resume that forgot either would not match.
RUN = [
    "teacher=lenet5",
    "student=mlp",
    "student.kwargs.hidden=[64]",
    "distill=crd",
    "distill.alpha=0.5",
    "trainer.epochs=5",
    "seed=3",
    *FAST,
]
TIMING = ("images_per_s", "epoch_s")


def _popen(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "distill", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def _wait_for_new(path: Path, proc: subprocess.Popen, before: int | None, timeout: float = 120) -> bool:
    """Waits until ``path`` is (re)written; False if the process ended first."""
    end = time.monotonic() + timeout
    while _mtime(path) in (None, before):
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.communicate()[1][-3000:]
            return False
        assert time.monotonic() < end, f"{path} was not written"
        time.sleep(0.02)
    return True


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _figures(run: Path) -> dict:
    s = json.loads((run / "summary.json").read_text())
    return {k: s[k] for k in ("test_acc", "last_test_acc", "val_acc", "best_epoch")}


@pytest.mark.slow
def test_killed_and_stopped_runs_resume_to_the_same_metrics(tmp_path):
    teacher = tmp_path / "teacher"
    done = run_cli("teacher", "teacher=lenet5", "trainer.epochs=1", *FAST, f"hydra.run.dir={teacher}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    common = [*RUN, f"teacher.checkpoint={teacher}", "cache.enabled=false"]
    alone = tmp_path / "alone"
    done = run_cli("train", *common, f"hydra.run.dir={alone}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    rng = random.Random(int(os.environ.get("RESUME_TEST_SEED", "0")))
    run = tmp_path / "killed"
    state = run / "checkpoints" / "state.pt"
    proc = _popen(["train", *common, "trainer.save_every_steps=4", f"hydra.run.dir={run}"], tmp_path)
    # a polite stop first, while the run is young: SIGTERM finishes the step, saves, exits 143 with the resume command
    assert _wait_for_new(state, proc, None), "the run ended before its first saved state"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert f"distill train resume={run}" in err and "Traceback" not in err
    proc = _popen(["train", f"resume={run}"], tmp_path)
    kills = []
    for _ in range(3):  # SIGKILL at a random moment while it trains (after a state write), then resume
        if not _wait_for_new(state, proc, _mtime(state)):
            break
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        kills.append(len(_metrics(run)))
        proc = _popen(["train", f"resume={run}"], tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert kills, "the run finished before it could be killed"
    assert _metrics(run) == _metrics(alone)
    assert _figures(run) == _figures(alone)

    # a finished run cannot be resumed again
    again = run_cli("train", f"resume={run}", cwd=tmp_path)
    assert again.returncode == 2 and "finished already" in again.stderr


def test_teacher_stage_resumes_from_an_epoch_end(tmp_path):
    # a state every 2 steps: the kill lands right after the first one, long before the run could end
    args = ["teacher", "teacher=lenet5", "trainer.epochs=3", "trainer.save_every_steps=2", *FAST]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert run_cli(*args, f"hydra.run.dir={ref}", cwd=tmp_path).returncode == 0
    proc = _popen([*args, f"hydra.run.dir={run}"], tmp_path)
    assert _wait_for_new(run / "checkpoints" / "state.pt", proc, None), "the run ended before its first state"
    proc.kill()
    proc.wait()
    assert not (run / "summary.json").exists(), "the run finished before the kill: nothing was tested"
    done = run_cli("teacher", f"resume={run}", "trainer.progress=off", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming at epoch" in done.stdout + done.stderr
    assert _metrics(run) == _metrics(ref) and _figures(run) == _figures(ref)


def test_resume_refuses_what_would_change_the_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    done = run_cli("train", f"resume={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert done.returncode == 2 and "no such run folder" in done.stderr
    done = run_cli("train", f"resume={run}", cwd=tmp_path)
    assert done.returncode == 2 and "not a distill run folder" in done.stderr
    done = run_cli("teacher", "teacher=lenet5", "trainer.epochs=1", *FAST, f"hydra.run.dir={run}", cwd=tmp_path)
    (run / "summary.json").unlink()  # as if killed after its last state
    done = run_cli("train", f"resume={run}", cwd=tmp_path)
    assert done.returncode == 2 and "is a teacher run" in done.stderr
    done = run_cli("teacher", f"resume={run}", "optim.lr=0.5", cwd=tmp_path)
    assert done.returncode == 2 and "optim.lr=0.5 would change it" in done.stderr
    # a state file of another kind is refused in one line
    (run / "checkpoints" / "state.pt").write_bytes(b"not a state")
    done = run_cli("teacher", f"resume={run}", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_sigint_saves_and_prints_the_resume_command(digits_teacher, tmp_path):
    """Ctrl-C: the step finishes, the state is saved, exit 130 with the command that continues it."""
    run = tmp_path / "run"
    args = [
        "train",
        "teacher=lenet5",
        f"teacher.checkpoint={digits_teacher}",
        "student=mlp",
        *DIGITS,
        "trainer.epochs=20",
    ]
    args += ["trainer.save_every_steps=2", f"hydra.run.dir={run}", outputs_root(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "distill", *args], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    state = run / "checkpoints" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert state.exists(), "no state was saved"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"Continue with: distill train resume={run}" in err and "Traceback" not in err
    assert not (run / "summary.json").exists()
    assert load_state(state)["epoch"] < 20


def test_a_run_from_before_a_default_changed_resumes_with_its_own_values(tmp_path):
    """A run started at lr 0.01 with no gradient limit (the defaults before optim.lr=auto and
    trainer.grad_clip), keeping the best-val-acc epoch (before trainer.select), replays those values,
    so its resumed config is the one it ran with."""
    from distill.config.resume import resume_args

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "state.pt").write_bytes(b"")
    (run / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    (run / "config.yaml").write_text("stage: train\nseed: 1\noptim:\n  lr: 0.01\ntrainer:\n  epochs: 3\n")
    args = resume_args("train", [f"resume={run}"])
    # ... and kept the epoch of the best val acc (trainer.select=best, before one_se was the default)
    assert args[:5] == ["seed=1", "optim.lr=0.01", "trainer.grad_clip=null", "trainer.epochs=3", "trainer.select=best"]
    # what the resume command gives (an allowed key) stays, and a stored override is not doubled
    (run / ".hydra" / "overrides.yaml").write_text("- optim.lr=0.2\n")
    assert resume_args("train", [f"resume={run}", "trainer.progress=off"])[:5] == [
        "optim.lr=0.2", "trainer.grad_clip=null", "trainer.epochs=3", "trainer.select=best", "trainer.progress=off"
    ]  # fmt: skip
