"""Data-parallel training: torchrun with 2 CPU processes (gloo) against 1 process, same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import run_cli

COMMON = [
    "teacher=mlp",
    "student=mlp",
    "student.kwargs.hidden=[32]",
    "trainer.epochs=12",
    "trainer.progress=off",
    "trainer.threads=1",
    "seed=0",
]


def test_two_processes_match_one_within_noise(tmp_path):
    teacher = tmp_path / "teacher"
    done = run_cli(
        "teacher", "teacher=mlp", "trainer.epochs=10", "trainer.progress=off", f"hydra.run.dir={teacher}", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    one = tmp_path / "one"
    done = run_cli("train", *COMMON, f"teacher.checkpoint={teacher}", f"hydra.run.dir={one}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    two = tmp_path / "two"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "distill",
            "train",
            *COMMON,
            "trainer.batch_size=32",  # 2 x 32: the one-process run's global batch of 64
            f"teacher.checkpoint={teacher}",
            f"hydra.run.dir={two}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a = json.loads((one / "summary.json").read_text())
    b = json.loads((two / "summary.json").read_text())
    print(f"1 process: test acc {a['test_acc']:.4f}; 2 processes: {b['test_acc']:.4f}")
    assert a["teacher_test_acc"] > 0.8 and a["test_acc"] > 0.75
    assert abs(a["test_acc"] - b["test_acc"]) <= 0.03  # 11 of digits' 360 test images
    # one writer: a single metrics line per epoch, counting both ranks' images
    rows = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    assert b["teacher_cache"]["used"]  # rank 0 built it, rank 1 read it
    assert "rank" not in b and (two / "checkpoints" / "best.safetensors").is_file()
