"""Every distillation method on one dataset: same teacher, student, seeds and epoch budget.

    python scripts/compare_methods.py --dataset mnist5k --epochs 10
    python scripts/compare_methods.py --dataset digits --epochs 15

Trains the teacher(s) once, then runs ``distill train`` for every method over the seeds (a Hydra
sweep per method), and writes ``methods_<dataset>.md`` and ``.csv`` in ``--out``: test accuracy
mean ± std, the gain over the student trained alone (same seeds), and the wall time per run.
Everything goes through the real CLI, as a user would run it.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

# name -> (description, extra overrides); "{teacher}", "{teacher2}" and "{alone}" are filled in.
METHODS: dict[str, tuple[str, list[str]]] = {
    "none": ("student alone (alpha=0)", ["distill=kd", "distill.alpha=0"]),
    "kd": ("Hinton KD, T=4, alpha=0.5", ["distill=kd"]),
    "kd_ls": ("KD + label smoothing 0.1", ["distill=kd", "distill.label_smoothing=0.1"]),
    "dkd": ("decoupled KD", ["distill=dkd"]),
    "dist": ("DIST relations", ["distill=dist"]),
    "fitnet": ("FitNets hints + CE", ["distill=fitnet"]),
    "at": ("attention transfer + CE", ["distill=at"]),
    "sp": ("similarity-preserving + CE", ["distill=sp"]),
    "rkd": ("relational KD + CE", ["distill=rkd"]),
    "pkt": ("probabilistic KT + CE", ["distill=pkt"]),
    "crd": ("contrastive RD + CE", ["distill=crd"]),
    "at+kd": ("attention transfer + KD", ["distill=at", "distill.alpha=0.5"]),
    "crd+kd": ("contrastive RD + KD", ["distill=crd", "distill.alpha=0.5"]),
    "multi_teacher": ("2 teachers, weighted KD", ["distill=multi_teacher", "distill.teachers=[{teacher2}]"]),
    "byot": ("self-distillation (no teacher)", ["distill=byot"]),
    "mutual": ("mutual learning with a student-sized peer", ["distill=mutual", "distill.peers=[{student}]"]),
    "online": ("online KD, teacher trained alongside", ["distill=online"]),
    "born_again": ("born-again: KD from the seed's alone run", ["distill=kd", "teacher={student}"]),
}


def distill(*args: str, log: Path) -> float:
    """Runs ``distill ARGS``; returns the wall time. Stops the script if it fails."""
    start = time.perf_counter()
    with open(log, "w") as f:
        done = subprocess.run([sys.executable, "-m", "distill", *args], stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.exit(f"distill {' '.join(args)} failed; see {log}")
    return time.perf_counter() - start


def summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("**/summary.json"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--teacher", default="resnet18")
    ap.add_argument("--student", default="lenet5")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--out", type=Path, default=Path("outputs/methods"))
    ap.add_argument("--threads", type=int, default=None, help="trainer.threads (default: torch's)")
    args = ap.parse_args()
    out = (args.out / args.dataset).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    common = [
        f"dataset={args.dataset}",
        f"student={args.student}",
        f"trainer.epochs={args.epochs}",
        "trainer.progress=off",
        f"paths.root={out}",
        *([f"trainer.threads={args.threads}"] if args.threads else []),
    ]
    teachers = {}
    for name, seed in (("teacher", 0), ("teacher2", 1)):
        run = out / name
        if not (run / "summary.json").is_file():
            secs = distill(
                "teacher",
                f"teacher={args.teacher}",
                f"dataset={args.dataset}",
                f"seed={seed}",
                f"trainer.epochs={args.teacher_epochs}",
                "trainer.progress=off",
                *([f"trainer.threads={args.threads}"] if args.threads else []),
                f"hydra.run.dir={run}",
                log=out / "logs" / f"{name}.log",
            )
            print(f"{name}: {args.teacher} trained in {secs:.0f} s", flush=True)
        teachers[name] = run
    fill = {"teacher2": str(teachers["teacher2"]), "student": args.student}
    seeds = ",".join(map(str, args.seeds))
    walls_file = out / "walls.json"  # wall time per run of each method, kept across invocations
    walls: dict[str, float] = json.loads(walls_file.read_text()) if walls_file.is_file() else {}
    order = ["none"] + [m for m in args.methods if m != "none"]
    for method in order:
        desc, extra = METHODS[method]
        extra = [e.format(**fill) for e in extra]
        folder = out / method
        if summaries(folder):
            print(f"{method}: already done in {folder}", flush=True)
            continue
        teacher_args = [f"teacher={args.teacher}"]
        if method not in ("online", "mutual", "byot", "none"):
            teacher_args.append(f"teacher.checkpoint={teachers['teacher']}")
        if method == "born_again":  # the teacher of seed s is the alone run of seed s: one run per seed
            alone = {s["seed"]: Path(s["weights"]).parent.parent for s in summaries(out / "none")}
            wall = 0.0
            for seed in args.seeds:
                wall += distill(
                    "train",
                    *common,
                    *extra,
                    f"teacher.checkpoint={alone[seed]}",
                    f"seed={seed}",
                    f"hydra.run.dir={folder / str(seed)}",
                    log=out / "logs" / f"{method}_{seed}.log",
                )
        else:
            wall = distill(
                "train",
                "-m",
                *common,
                *teacher_args,
                *extra,
                f"seed={seeds}",
                f"hydra.sweep.dir={folder}",
                log=out / "logs" / f"{method}.log",
            )
        walls[method] = wall / len(args.seeds)
        walls_file.write_text(json.dumps(walls, indent=1))
        accs = [s["test_acc"] for s in summaries(folder)]
        print(
            f"{method}: {statistics.fmean(accs):.4f} ({', '.join(f'{a:.3f}' for a in accs)}) {walls[method]:.0f} s/run",
            flush=True,
        )
    write_table(out, [m for m in METHODS if summaries(out / m)], args, teachers, walls)


def write_table(out: Path, order: list[str], args: argparse.Namespace, teachers: dict, walls: dict) -> None:
    base = [s["test_acc"] for s in summaries(out / "none")]
    base_mean = statistics.fmean(base)
    t_acc = json.loads((teachers["teacher"] / "summary.json").read_text())["test_acc"]
    rows = []
    for method in order:
        runs = summaries(out / method)
        accs = [s["test_acc"] for s in runs]
        if not accs:
            continue
        mean = statistics.fmean(accs)
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        secs = walls.get(method)
        if secs is None:  # a rerun of the script: the runs' own training time
            secs = statistics.fmean(s["train_seconds"] for s in runs)
        cached = [bool((s.get("teacher_cache") or {}).get("used")) for s in runs]
        rows.append(
            [
                method,
                METHODS[method][0],
                len(accs),
                f"{mean:.4f} ± {std:.4f}",
                f"{(mean - base_mean) * 100:+.2f}",
                f"{secs:.0f}",
                "yes" if all(cached) else "no",
            ]
        )
    head = ["method", "what", "seeds", "test acc", "gain (points)", "s/run", "teacher cache"]
    title = (
        f"{args.dataset}: teacher {args.teacher} ({t_acc:.4f}), student {args.student}, "
        f"{args.epochs} epochs, seeds {', '.join(map(str, args.seeds))}"
    )
    lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    (out / f"methods_{args.dataset}.md").write_text(text)
    with open(out / f"methods_{args.dataset}.csv", "w", newline="") as f:
        csv.writer(f).writerows([head, *rows])
    print(text)


if __name__ == "__main__":
    main()
