"""Kill-and-resume, 2 processes against 1, and an Optuna search, on mnist5k, through the real CLI.

    python scripts/survive_and_scale.py --teacher-run RUN_DIR [--out outputs/survive]

1. The same KD run twice: left alone, and killed with SIGKILL at two random moments plus stopped
   once with SIGTERM, each time resumed with ``distill train resume=RUN``; prints both runs'
   per-epoch metrics and whether they are identical.
2. Plain KD on 2 processes (``torchrun --nproc_per_node=2``, batch 32 per rank: the same global
   batch of 64) against 1 process.
3. ``hydra/sweeper=kd_search`` (Optuna) with a few trials: the best trial.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

TIMING = ("images_per_s", "epoch_s")


def distill(args: list[str], cwd: Path, log: Path, prefix: list[str] | None = None) -> subprocess.Popen:
    cmd = [*(prefix or [sys.executable, "-m"]), "distill", *args]
    return subprocess.Popen(cmd, cwd=cwd, stdout=open(log, "a"), stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, what: str) -> None:
    if proc.wait() != 0:
        sys.exit(f"{what} failed (exit {proc.returncode})")


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def wait_for_write(path: Path, proc: subprocess.Popen, before: int | None) -> bool:
    while True:
        now = path.stat().st_mtime_ns if path.exists() else None
        if now is not None and now != before:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher-run", type=Path, required=True)
    ap.add_argument("--teacher", default="resnet18")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="draws the kill moments")
    ap.add_argument("--out", type=Path, default=Path("outputs/survive"))
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    common = [
        "dataset=mnist5k",
        f"teacher={args.teacher}",
        f"teacher.checkpoint={args.teacher_run.resolve()}",
        "student=lenet5",
        "distill=crd",  # memory banks and random negatives: state a resume must carry
        "distill.alpha=0.5",
        f"trainer.epochs={args.epochs}",
        "trainer.progress=off",
        "trainer.threads=2",
        f"paths.root={out}",
    ]
    alone, killed = out / "alone", out / "killed"
    if not (alone / "summary.json").exists():
        finish(distill(["train", *common, f"hydra.run.dir={alone}"], out, log), "the uninterrupted run")
    rng = random.Random(args.seed)
    events = []
    if not (killed / "summary.json").exists():
        state = killed / "checkpoints" / "state.pt"
        proc = distill(["train", *common, "trainer.save_every_steps=20", f"hydra.run.dir={killed}"], out, log)
        for sig in (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM):
            if not wait_for_write(state, proc, state.stat().st_mtime_ns if state.exists() else None):
                break
            time.sleep(rng.uniform(0.0, 3.0))
            if proc.poll() is not None:
                break
            proc.send_signal(sig)
            code = proc.wait()
            where = len(metrics(killed))
            events.append(f"{signal.Signals(sig).name} after {where} finished epochs: exit {code}")
            print(events[-1], flush=True)
            proc = distill(["train", f"resume={killed}", "trainer.progress=off"], out, log)
        finish(proc, "the resumed run")
    a, b = metrics(alone), metrics(killed)
    print("\n| epoch | train loss (alone / resumed) | val acc (alone / resumed) |\n|---|---|---|")
    for ra, rb in zip(a, b):
        print(f"| {ra['epoch']} | {ra['train_loss']} / {rb['train_loss']} | {ra['val_acc']} / {rb['val_acc']} |")
    sa, sb = summary(alone), summary(killed)
    same = a == b and all(sa[k] == sb[k] for k in ("test_acc", "last_test_acc", "val_acc"))
    print(f"test acc {sa['test_acc']} / {sb['test_acc']}; every metric identical: {same}")

    two = out / "two_processes"
    if not (two / "summary.json").exists():
        env_prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
        os.environ["OMP_NUM_THREADS"] = "1"
        two_args = [a for a in common if not a.startswith(("trainer.threads", "distill=", "distill.alpha"))]
        proc = distill(
            ["train", *two_args, "trainer.threads=1", "trainer.batch_size=32", f"hydra.run.dir={two}"],
            out,
            log,
            prefix=env_prefix,
        )
        finish(proc, "the 2-process run")
    one = out / "one_process"
    if not (one / "summary.json").exists():
        one_args = [a for a in common if not a.startswith(("distill=", "distill.alpha"))]
        finish(distill(["train", *one_args, f"hydra.run.dir={one}"], out, log), "the 1-process run")
    so, st = summary(one), summary(two)
    print(
        f"\nKD (T=4, alpha=0.5) on 1 process (batch 64): test acc {so['test_acc']}, {so['train_images_per_s']} img/s; "
        f"on 2 processes (2 x 32): test acc {st['test_acc']}, {st['train_images_per_s']} img/s"
    )

    search = out / "optuna"
    if not (search / "optimization_results.yaml").exists():
        search_args = [a for a in common if not a.startswith(("distill=", "distill.alpha", "trainer.epochs"))]
        proc = distill(
            [
                "train",
                "-m",
                "hydra/sweeper=kd_search",
                f"hydra.sweeper.n_trials={args.trials}",
                *search_args,
                "trainer.epochs=3",
                f"hydra.sweep.dir={search}",
            ],
            out,
            log,
        )
        finish(proc, "the Optuna search")
    print("\nOptuna (hydra/sweeper=kd_search), " + (search / "optimization_results.yaml").read_text())
    trials = sorted((summary(p.parent) for p in search.glob("*/summary.json")), key=lambda s: -s["val_acc"])
    print("| T | alpha | val acc | test acc |\n|---|---|---|---|")
    for s in trials:
        print(f"| {s['temperature']:.3g} | {s['alpha']:.3g} | {s['val_acc']} | {s['test_acc']} |")


if __name__ == "__main__":
    main()
