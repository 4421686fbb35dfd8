"""The teacher ``distill train`` trains for itself: trained once for runs started together, continued
after an interruption, reused only for the same recipe, never taken from a failed or unfinished run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from distill.teachers import auto as auto_teacher

# trainer.epochs given on the command line sets the automatic teacher's epochs too
EPOCHS = 8
TRAIN = ["train", "dataset=digits", "student=mlp", f"trainer.epochs={EPOCHS}", "trainer.threads=1"]
TRAIN += ["trainer.progress=off", "cache.enabled=false"]


def _launch(*args: str, cwd: Path) -> subprocess.Popen:
    # wide enough that rich does not fold the log lines the tests read
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "COLUMNS": "400"}
    cmd = [sys.executable, "-m", "distill", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _teacher_runs(root: Path) -> list[Path]:
    return sorted(p.parent.parent for p in root.glob("teacher/**/checkpoints/state.pt"))


def _finished_teachers(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("teacher/**/summary.json"))


@pytest.mark.slow  # end to end across processes or runs: CI's second step
def test_two_runs_needing_one_teacher_train_it_once(tmp_path):
    root = tmp_path / "outputs"
    procs = [_launch(*TRAIN, "teacher=lenet5", f"paths.root={root}", f"seed={s}", cwd=tmp_path) for s in (0, 1)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    teachers = _finished_teachers(root)
    assert len(teachers) == 1, teachers
    weights = {json.loads(s.read_text())["teacher_weights"] for s in root.glob("train/**/summary.json")}
    assert weights == {str((teachers[0] / "checkpoints" / "best.safetensors").resolve())}
    # one of them waited on the lock while the other trained, then reused that teacher
    assert any("another run is training this teacher" in o for o in outs), outs
    assert any("teacher: reusing" in o for o in outs), outs


@pytest.mark.slow  # end to end across processes or runs: CI's second step
def test_an_interrupted_teacher_is_continued_by_the_rerun(tmp_path):
    root = tmp_path / "outputs"
    args = [*TRAIN, "teacher=lenet5", f"paths.root={root}"]
    proc = _launch(*args, cwd=tmp_path)
    deadline = time.time() + 300
    metrics = None
    while time.time() < deadline and proc.poll() is None:
        found = list(root.glob("teacher/**/metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 2:
            metrics = found[0]
            break
        time.sleep(0.2)
    assert metrics is not None, "the teacher never finished two epochs: the interruption is not tested"
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, out
    assert "Run the same command again" in out, out
    run_dir = metrics.parent
    done = metrics.read_text().splitlines()
    assert 2 <= len(done) < EPOCHS and not (run_dir / "summary.json").exists()

    again = _launch(*args, cwd=tmp_path)
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0, out
    assert f"continuing the interrupted teacher run {run_dir}" in out, out
    assert f"resuming at epoch {len(done) + 1}" in out, out
    assert _teacher_runs(root) == [run_dir], "no second teacher run"
    rows = metrics.read_text().splitlines()
    assert len(rows) == EPOCHS and rows[: len(done)] == done, "the epochs before the interruption were not repeated"
    summary = json.loads(next(root.glob("train/**/summary.json")).read_text())
    assert summary["teacher_weights"] == str((run_dir / "checkpoints" / "best.safetensors").resolve())


def _fake_teacher_run(root: Path, name: str, epochs: int, summary: bool = True, failed: bool = False) -> Path:
    """A teacher run folder as the teacher stage writes it (config.yaml, state, summary)."""
    from distill.config.adapters import plain_config
    from distill.config.entry import compose_stage

    cfg = compose_stage("teacher", ["teacher=mlp", "dataset=digits", f"trainer.epochs={epochs}", f"paths.root={root}"])
    run = root / "teacher" / name
    cfg.paths.output_dir = str(run)
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(plain_config(cfg)))
    (run / "checkpoints" / "state.pt").write_bytes(b"")
    if summary:
        (run / "summary.json").write_text(json.dumps({"stage": "teacher", "model": "mlp", "epochs": epochs}))
    if failed:
        (run / "failed.json").write_text(json.dumps({"status": "failed"}))
    return run


@pytest.fixture
def want(tmp_path):
    from distill.config.adapters import plain_config
    from distill.config.entry import compose_stage

    cfg = compose_stage("teacher", ["teacher=mlp", "dataset=digits", f"paths.root={tmp_path}"])  # 20 epochs
    cfg.paths.output_dir = str(tmp_path / "teacher" / "new")
    return auto_teacher.recipe(plain_config(cfg))


def test_only_a_teacher_of_the_same_recipe_is_reused(tmp_path, want):
    _fake_teacher_run(tmp_path, "one_epoch", epochs=1)
    assert auto_teacher.reusable(tmp_path, want) == [], "a 1-epoch teacher is not a 20-epoch one"
    same = _fake_teacher_run(tmp_path, "twenty", epochs=20)
    assert [r for r, _ in auto_teacher.reusable(tmp_path, want)] == [same]


def test_failed_and_unfinished_teacher_runs_are_never_reused(tmp_path, want):
    stopped = _fake_teacher_run(tmp_path, "stopped", epochs=20, summary=False)
    _fake_teacher_run(tmp_path, "failed", epochs=20, summary=False, failed=True)
    assert auto_teacher.reusable(tmp_path, want) == []
    assert auto_teacher.interrupted(tmp_path, want, seed=0) == stopped, "only the interrupted one is continued"
    assert auto_teacher.interrupted(tmp_path, want, seed=1) is None, "another seed is another teacher"


def test_a_teacher_stored_before_grad_clip_existed_keeps_its_recipe():
    from distill.teachers.auto import recipe

    old = {"stage": "teacher", "trainer": {"epochs": 20, "batch_size": 64}, "optim": {"lr": 0.05}}
    new = {**old, "trainer": {**old["trainer"], "grad_clip": None}}
    assert recipe(old) == recipe(new)
    assert recipe(old) != recipe({**old, "trainer": {**old["trainer"], "grad_clip": 1.0}})
