"""Data parallelism on DistributedDataParallel: 2 CPU processes (gloo) against 1, same global batch.

The fast tests spawn two ranks (torch.multiprocessing, a FileStore rendezvous, no CLI) that
train through the engine itself (TrainedParts, data_parallel, train_one_epoch, fit) and compare
with one process stepping on the same global batch. The students are MLPs (no
BatchNorm: BatchNorm normalises each rank's half batch with its own statistics, so it is not the
global batch's step). The slow test runs the CLI under torchrun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

N, B, EPOCHS = 64, 8, 2  # training images; batch per rank (one process takes 2 x B: the global batch)
KINDS = ("fitnet", "mutual")

COMMON = [
    "teacher=mlp",
    "student=mlp",
    "student.kwargs.hidden=[32]",
    "trainer.epochs=12",
    "trainer.progress=off",
    "trainer.threads=1",
    "seed=0",
]


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _setup(kind: str) -> tuple:
    """Student, loss, teachers, student taps and optimizer of a run with trained parts besides the student.

    ``fitnet``: a frozen teacher, two-stage FitNets (epoch 1 trains the hint alone, leaving the
    student's head out; epoch 2 the CE and KD terms, leaving the connector out) with a Linear
    connector. ``mutual``: deep mutual learning with an online peer. SGD with momentum and weight
    decay, so a parameter stepped with a zero gradient instead of none would drift."""
    from distill.engine.loop import Teachers
    from distill.engine.taps import attach_taps
    from distill.losses.combined import DistillLoss
    from distill.losses.fitnet import FitNet
    from distill.losses.kd import KDLoss
    from distill.losses.mutual import peer_loss
    from distill.models.small import mlp

    torch.manual_seed(1)
    student = mlp(3, 1, (4, 4), hidden=[16, 16])
    taps = None
    if kind == "fitnet":
        teacher = mlp(3, 1, (4, 4), hidden=[24]).eval().requires_grad_(False)
        loss_fn = DistillLoss(KDLoss(temperature=4.0, alpha=0.5), FitNet(hint_epochs=1, weight=1.0), beta=1.0)
        example = _images(2, 0)[0].float().div(255)
        taps, t_taps, _ = attach_taps(student, teacher, loss_fn.method, ["features.2"], ["features.2"], example, 3, N)
        teachers = Teachers([teacher], t_taps)
    else:
        loss_fn = DistillLoss(KDLoss(temperature=4.0, alpha=0.5))
        teachers = Teachers([mlp(3, 1, (4, 4), hidden=[16])], online=True, peer_loss=peer_loss(1.0))
    params = [*student.parameters(), *loss_fn.parameters()]
    params += [p for m in teachers.models for p in m.parameters()] if teachers.online else []
    optimizer = torch.optim.SGD(params, lr=0.2, momentum=0.9, weight_decay=5e-4)
    return student, loss_fn, teachers, taps, optimizer


def _trajectory(kind: str, batch_size: int, scramble: bool = False) -> list[torch.Tensor]:
    """Every trained parameter (student, connector, peer), flat, after each optimizer step of EPOCHS
    epochs. ``scramble``: start from weights of this rank's own (the wrapper must replace them)."""
    from distill.engine import distributed as dist
    from distill.engine.batches import BatchLoader
    from distill.engine.loop import TrainedParts, leaves_parts_out, train_one_epoch

    student, loss_fn, teachers, taps, optimizer = _setup(kind)
    if scramble:
        with torch.no_grad():
            for p in student.parameters():
                p.normal_()
    parts = dist.data_parallel(TrainedParts(student, loss_fn, teachers, taps), leaves_parts_out(loss_fn, EPOCHS))
    assert leaves_parts_out(loss_fn, EPOCHS) == (kind == "fitnet")
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in parts.parameters()} == {id(p) for p in trained}  # one module holds them all
    loader = BatchLoader(*_images(N, 2), batch_size, seed=1, shard=True)
    steps: list[torch.Tensor] = []
    for epoch in range(EPOCHS):
        loader.set_epoch(epoch)
        train_one_epoch(
            student,
            loss_fn,
            loader,
            optimizer,
            teachers=teachers,
            student_taps=taps,
            epoch=epoch,
            parts=parts,
            on_step=lambda step, run: steps.append(torch.cat([p.detach().flatten() for p in trained])),
        )
    return steps


def _fit(run_dir: Path, epochs: int, batch_size: int, resume: dict | None = None) -> None:
    """``fit`` of the two-stage FitNets run on a tiny split: checkpoints, state, metrics."""
    from distill.data.base import Splits
    from distill.engine.fit import fit
    from distill.engine.settings import TrainerSettings
    from distill.models.spec import ModelSpec

    student, loss_fn, teachers, taps, optimizer = _setup("fitnet")
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
    (x, y), (vx, vy) = _images(N, 2), _images(32, 3)
    data = Splits("tiny", x, y, vx, vy, vx, vy, ["a", "b", "c"], (0.5,), (0.25,))
    settings = TrainerSettings(
        epochs=epochs, batch_size=batch_size, device="cpu", channels_last=False, bn_recalibrate=False, progress="off"
    )
    spec = ModelSpec("mlp", 3, 1, [4, 4], [0.5], [0.25], ["a", "b", "c"], {"hidden": [16, 16]})
    fit(student, loss_fn, data, optimizer, scheduler, settings, run_dir, spec, {}, 1, teachers, taps, resume=resume)


def _rank(rank: int, store: str, out: str) -> None:
    """One of two ranks: the trajectories, then a straight fit and a fit resumed after its first epoch."""
    import torch.distributed as tdist

    from distill.engine.checkpoint import load_state

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", store=tdist.FileStore(store, 2), rank=rank, world_size=2)
    try:
        out_dir = Path(out)
        for kind in KINDS:
            torch.save(_trajectory(kind, B, scramble=rank == 1), out_dir / f"{kind}_rank{rank}.pt")
        _fit(out_dir / "straight", EPOCHS, B)
        _fit(out_dir / "resumed", 1, B)
        _fit(out_dir / "resumed", EPOCHS, B, resume=load_state(out_dir / "resumed" / "checkpoints" / "state.pt"))
    finally:
        tdist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """What two ranks wrote, beside one process's trajectories and fit on the same global batches."""
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    mp.spawn(_rank, args=(str(out / "store"), str(out)), nprocs=2, join=True)
    for kind in KINDS:
        torch.save(_trajectory(kind, 2 * B), out / f"{kind}_one.pt")
    _fit(out / "one", EPOCHS, 2 * B)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_ranks_hold_identical_weights_after_every_step(two_ranks, kind):
    """Rank 1 started from weights of its own; the wrapper replaced them with rank 0's, and after
    every optimizer step the two ranks hold the same bits (student, connector and peer alike)."""
    r0, r1 = (torch.load(two_ranks / f"{kind}_rank{r}.pt", weights_only=True) for r in (0, 1))
    assert len(r0) == len(r1) == EPOCHS * N // (2 * B)
    diff = max((a - b).abs().max().item() for a, b in zip(r0, r1))
    print(f"{kind}: max |rank 0 - rank 1| over {len(r0)} steps = {diff:.3g}")
    assert diff == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_two_ranks_step_as_one_process_on_the_global_batch(two_ranks, kind):
    """Each step of 2 ranks on B images each equals one process's step on the 2 B images, within
    float noise; with two-stage FitNets the parameters a stage leaves out keep no gradient on
    either side (momentum and weight decay would otherwise move them)."""
    two, one = (torch.load(two_ranks / f"{kind}_{w}.pt", weights_only=True) for w in ("rank0", "one"))
    assert len(two) == len(one)
    diffs = [(a - b).abs().max().item() for a, b in zip(two, one)]
    print(f"{kind}: max |2 ranks - 1 process| per step: " + " ".join(f"{d:.2g}" for d in diffs))
    for step, (a, b) in enumerate(zip(two, one)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=f"{kind}, step {step + 1}")
    assert (one[-1] - one[0]).abs().max() > 1e-2  # the steps moved the weights


def test_checkpoints_hold_the_bare_student_and_a_resumed_ddp_run_ends_as_the_straight_one(two_ranks):
    from distill.engine.checkpoint import load_state, read_weights
    from distill.engine.runs import RunDir

    student_keys = set(_setup("fitnet")[0].state_dict())
    straight, resumed, one = (RunDir(two_ranks / name) for name in ("straight", "resumed", "one"))
    w_straight, w_resumed, w_one = (read_weights(r.last)[0] for r in (straight, resumed, one))
    assert set(w_straight) == student_keys  # no "module." or "student." prefixes
    state = load_state(straight.state)
    assert set(state["model"]) == student_keys and all(k.startswith("method.") for k in state["loss_fn"])
    for k in student_keys:
        assert torch.equal(w_resumed[k], w_straight[k]), k
        torch.testing.assert_close(w_straight[k], w_one[k], atol=1e-6, rtol=1e-5)
    rows = [[json.loads(x) for x in r.metrics.read_text().splitlines()] for r in (straight, resumed, one)]
    assert [r["epoch"] for r in rows[0]] == [1, 2]  # one writer
    for key in ("train_loss", "val_acc", "train_hint"):
        assert [r[key] for r in rows[1]] == [r[key] for r in rows[0]], key
        assert [r[key] for r in rows[2]] == pytest.approx([r[key] for r in rows[0]], abs=1e-5), key


@pytest.mark.slow
def test_two_processes_match_one_within_noise(tmp_path):
    from tests.conftest import run_cli

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
