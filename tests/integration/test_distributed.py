"""Data-parallel training: torchrun with 2 CPU processes (gloo) against 1 process, same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def _net() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(64, 16, generator=g), torch.randint(0, 5, (64,), generator=g)


def _step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, after_backward=None) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    for _ in range(3):  # a few steps, so a rank that kept its own gradients drifts visibly
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        if after_backward is not None:
            after_backward()
        opt.step()


def _rank(rank: int, port: int, out: str) -> None:
    """One rank: distill's own start and gradient averaging, on its half of the global batch."""
    import torch.distributed as tdist

    from distill.engine import distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    dist.init()
    torch.manual_seed(100 + rank)  # each rank draws its own start: same_start must replace it
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    if rank == 0:
        net.load_state_dict(_net().state_dict())
    dist.same_start(net)
    x, y = _global_batch()
    half = slice(32 * rank, 32 * (rank + 1))
    params = list(net.parameters())
    _step(net, x[half], y[half], after_backward=lambda: dist.average_gradients(params))
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, Path(out) / f"rank{rank}.pt")
    tdist.destroy_process_group()


def test_averaged_gradients_are_one_step_of_the_global_batch(tmp_path):
    """What gradient averaging guarantees: after the steps both ranks hold identical weights, equal
    (within float noise) to one process stepping on the whole global batch."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0]), "the ranks' weights differ"
    one = _net()
    _step(one, *_global_batch())
    for k, v in one.state_dict().items():
        assert torch.allclose(ranks[0][k], v, atol=1e-6), (k, (ranks[0][k] - v).abs().max())
    start = _net().state_dict()
    assert not torch.allclose(ranks[0]["0.weight"], start["0.weight"]), "the steps changed nothing"


@pytest.mark.slow
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
