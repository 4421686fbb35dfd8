"""distill against the hand-written reference loop and torchdistill, on the same work, in one run.

    python scripts/bench_speed.py --bench ../shared/bench --peer-python /path/to/venv-with-torchdistill/bin/python

Workload (``shared/bench/README.md``): KD of mobilenet_v2 from resnet50 and from resnet152 on
synthetic 3x32x32 images (1,024, batch 64, SGD lr 0.01, no scheduler, T=4, soft weight 0.9,
2 threads), one warm-up epoch and one timed epoch; every configuration is run ``--repeats``
times, interleaved, and the medians are compared. Printed and written to ``--out``:

1. KD epoch with the teacher cache / the fastest student-only epoch (the physical floor)
2. KD epoch without the cache / the hand-written reference loop's KD epoch (the teacher in onnxruntime,
   the default on a CPU, and kept in PyTorch)
3. KD epoch with the cache / torchdistill's KD epoch
4. a 4-temperature sweep end to end (processes included) / torchdistill doing the same 4 runs, and
   / the sweep members' own training epochs
5. peak memory (max RSS) against the reference loop's KD run: building the teacher cache (the first
   repeat), reading it (the others), the teacher live in onnxruntime and kept in PyTorch

Ratios are of epoch times (images/s inverted). No timed assertion anywhere: these are figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

EPOCHS = 2  # 1 warm-up + 1 timed, as the reference suite


def timed(cmd: list[str], cwd: Path, log: Path) -> tuple[float, int, str]:
    """Runs ``cmd`` under /usr/bin/time; returns wall seconds, max RSS (kB) and stdout."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    log.write_text(done.stdout + "\n" + done.stderr)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}; see {log}")
    rss = int([ln for ln in done.stderr.splitlines() if ln.startswith("MAXRSS")][-1].split()[1])
    return wall, rss, done.stdout


def last_epoch_ips(run_dir: Path) -> float:
    rows = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float(rows[-1]["images_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", type=Path, default=Path("../shared/bench"))
    ap.add_argument("--peer-python", default=sys.executable, help="a Python with torchdistill 1.1.5 installed")
    ap.add_argument("--teachers", nargs="+", default=["resnet50", "resnet152"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_speed"))
    args = ap.parse_args()
    out = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    bench = args.bench.resolve()
    me = [sys.executable, "-m", "distill"]
    common = [
        "dataset=synthetic",
        "student=mobilenet_v2",
        "optim.lr=0.01",
        "optim.weight_decay=0",
        "sched=none",
        "trainer.batch_size=64",
        "trainer.threads=2",
        "trainer.progress=off",
        "trainer.bn_recalibrate=false",
        f"trainer.epochs={EPOCHS}",
        "distill.temperature=4",
        "distill.alpha=0.9",
        f"paths.root={out / 'runs'}",
    ]
    plain = [
        sys.executable,
        str(bench / "plain_kd.py"),
        "--data",
        "synth",
        "--img-size",
        "32",
        "--n-train",
        "1024",
        "--batch-size",
        "64",
        "--epochs",
        "1",
        "--warmup-epochs",
        "1",
        "--threads",
        "2",
        "--seed",
        "0",
        "--lr",
        "0.01",
        "--sched",
        "none",
    ]
    td_kd = str(bench / "torchdistill_configs" / "synth_kd_resnet50_mobilenet_v2.yaml")
    teachers = {}
    for t in args.teachers:  # distill needs a teacher run to distil from (random weights are fine for speed)
        run = out / f"teacher_{t}"
        if not (run / "summary.json").is_file():
            timed(
                [
                    *me,
                    "teacher",
                    f"teacher={t}",
                    "dataset=synthetic",
                    "trainer.epochs=1",
                    "trainer.threads=2",
                    "trainer.progress=off",
                    f"hydra.run.dir={run}",
                ],
                out,
                out / "logs" / f"teacher_{t}.log",
            )
        teachers[t] = run
    results: dict[str, list[dict]] = {}
    memory: dict[str, list[int]] = {}  # max RSS (kB) of the cache-building and the cache-reading runs

    def record(name: str, ips: float, wall: float, rss: int) -> None:
        results.setdefault(name, []).append({"ips": ips, "wall": wall, "rss_kb": rss})
        print(f"  {name:<42} {ips:8.1f} img/s  {wall:6.1f} s  {rss / 1024:7.0f} MB", flush=True)

    for rep in range(args.repeats):
        print(f"repeat {rep + 1}/{args.repeats}", flush=True)
        for t in args.teachers:
            ckpt = f"teacher.checkpoint={teachers[t]}"
            for label, extra in (
                ("cache", ["cache.enabled=true"]),
                ("live", ["cache.enabled=false"]),  # the default teacher backend (onnxruntime on a CPU)
                ("live torch", ["cache.enabled=false", "trainer.teacher_backend=torch"]),
            ):
                run = out / "runs" / f"{t}_{label.replace(' ', '_')}_{rep}"
                wall, rss, _ = timed(
                    [*me, "train", f"teacher={t}", ckpt, *common, *extra, f"hydra.run.dir={run}"],
                    out,
                    out / "logs" / f"{t}_{label.replace(' ', '_')}_{rep}.log",
                )
                record(f"distill KD {t} ({label} teacher)", last_epoch_ips(run), wall, rss)
                if label == "cache":  # the first repeat builds the entry, the others read it: memory of each
                    built = json.loads((run / "summary.json").read_text())["teacher_cache"]["status"] == "built"
                    memory.setdefault(f"{t} cache {'build' if built else 'hit'}", []).append(rss)
            wall, rss, stdout = timed(
                [
                    *plain,
                    "--mode",
                    "kd",
                    "--teacher",
                    t,
                    "--student",
                    "mobilenet_v2",
                    "--temperature",
                    "4",
                    "--alpha",
                    "0.9",
                ],
                out,
                out / "logs" / f"plain_{t}_{rep}.log",
            )
            record(f"plain loop KD {t}", json.loads(stdout.splitlines()[-1])["train_images_per_s"], wall, rss)
            wall, rss, stdout = timed(
                [
                    args.peer_python,
                    str(bench / "torchdistill_run.py"),
                    "--config",
                    td_kd,
                    "--teacher",
                    t,
                    "--warmup-epochs",
                    "1",
                    "--threads",
                    "2",
                    "--seed",
                    "0",
                    "--quiet",
                ],
                bench,
                out / "logs" / f"td_{t}_{rep}.log",
            )
            record(f"torchdistill KD {t}", json.loads(stdout.splitlines()[-1])["train_images_per_s"], wall, rss)
        run = out / "runs" / f"alone_{rep}"
        wall, rss, _ = timed(
            [*me, "train", *common, "distill.alpha=0", f"hydra.run.dir={run}"], out, out / "logs" / f"alone_{rep}.log"
        )
        record("distill mobilenet_v2 alone", last_epoch_ips(run), wall, rss)
        wall, rss, stdout = timed(
            [*plain, "--mode", "student-only", "--student", "mobilenet_v2"],
            out,
            out / "logs" / f"plain_alone_{rep}.log",
        )
        record("plain loop mobilenet_v2 alone", json.loads(stdout.splitlines()[-1])["train_images_per_s"], wall, rss)
    # 4-temperature sweep, end to end, against torchdistill running the same 4 runs (first teacher).
    t = args.teachers[0]
    sweep_dir = out / "runs" / "sweep"
    sweep_wall, _, _ = timed(
        [
            *me,
            "train",
            "-m",
            f"teacher={t}",
            f"teacher.checkpoint={teachers[t]}",
            *common,
            "distill.temperature=1,2,4,8",
            f"hydra.sweep.dir={sweep_dir}",
            f"cache.dir={out / 'sweep_cache'}",
        ],
        out,
        out / "logs" / "sweep.log",
    )
    td_wall = 0.0
    for temp in (1, 2, 4, 8):
        wall, _, _ = timed(
            [
                args.peer_python,
                str(bench / "torchdistill_run.py"),
                "--config",
                td_kd,
                "--teacher",
                t,
                "--warmup-epochs",
                "1",
                "--threads",
                "2",
                "--seed",
                "0",
                "--quiet",
                "--set",
                f"train.criterion.kwargs.sub_terms.kd.criterion.kwargs.temperature={temp}",
            ],
            bench,
            out / "logs" / f"td_sweep_{temp}.log",
        )
        td_wall += wall
    members_epochs = sum(
        json.loads(line)["epoch_s"] for p in sweep_dir.glob("*/metrics.jsonl") for line in p.read_text().splitlines()
    )
    report(results, memory, args.teachers, sweep_wall, td_wall, members_epochs, out)


def report(
    results: dict,
    memory: dict,
    teachers: list[str],
    sweep_wall: float,
    td_wall: float,
    members_epochs: float,
    out: Path,
) -> None:
    med = {k: statistics.median(r["ips"] for r in v) for k, v in results.items()}
    rss = {k: max(r["rss_kb"] for r in v) / 1024 for k, v in results.items()}
    floor = max(med["distill mobilenet_v2 alone"], med["plain loop mobilenet_v2 alone"])
    lines = [
        "| measure (synthetic 3x32x32, 1,024 images, batch 64, 2 threads; medians) | "
        + " | ".join(teachers)
        + " | target |",
        "|---|" + "---|" * len(teachers) + "---|",
    ]

    def row(label: str, values: list[str], target: str) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + f" | {target} |")

    row("distill KD, teacher cache (img/s)", [f"{med[f'distill KD {t} (cache teacher)']:.0f}" for t in teachers], "")
    row("distill KD, live teacher (img/s)", [f"{med[f'distill KD {t} (live teacher)']:.0f}" for t in teachers], "")
    row(
        "distill KD, live teacher kept in PyTorch (img/s)",
        [f"{med[f'distill KD {t} (live torch teacher)']:.0f}" for t in teachers],
        "",
    )
    row("reference loop KD (img/s)", [f"{med[f'plain loop KD {t}']:.0f}" for t in teachers], "")
    row("torchdistill KD (img/s)", [f"{med[f'torchdistill KD {t}']:.0f}" for t in teachers], "")
    row("student alone, fastest (img/s)", [f"{floor:.0f}" for _ in teachers], "")
    row(
        "1. KD epoch with cache / student-only floor",
        [f"{floor / med[f'distill KD {t} (cache teacher)']:.2f}" for t in teachers],
        "<= 1.05",
    )
    row(
        "2. KD epoch without cache / reference loop",
        [f"{med[f'plain loop KD {t}'] / med[f'distill KD {t} (live teacher)']:.2f}" for t in teachers],
        "<= 0.5",
    )
    row(
        "2'. the same, teacher kept in PyTorch",
        [f"{med[f'plain loop KD {t}'] / med[f'distill KD {t} (live torch teacher)']:.2f}" for t in teachers],
        "<= 0.5",
    )
    row(
        "3. KD epoch with cache / torchdistill",
        [f"{med[f'torchdistill KD {t}'] / med[f'distill KD {t} (cache teacher)']:.2f}" for t in teachers],
        "<= 0.2",
    )
    row(
        f"4. 4-temperature sweep end to end / torchdistill's 4 runs ({teachers[0]})",
        [f"{sweep_wall / td_wall:.2f} ({sweep_wall:.0f} s / {td_wall:.0f} s)"] + ["-"] * (len(teachers) - 1),
        "<= 0.15",
    )
    row(
        "4'. the same sweep end to end / its members' training epochs",
        [f"{sweep_wall / members_epochs:.2f} ({sweep_wall:.0f} s / {members_epochs:.0f} s)"]
        + ["-"] * (len(teachers) - 1),
        "<= 1.3",
    )

    def mem(key: str, t: str) -> float:
        return max(memory.get(f"{t} {key}", [0])) / 1024

    def ratio(key: str, t: str) -> str:
        ref = rss[f"plain loop KD {t}"]
        return f"{mem(key, t) / ref:.2f} ({mem(key, t):.0f} / {ref:.0f} MB)" if mem(key, t) else "not run"

    for key in ("cache build", "cache hit"):
        row(
            f"5{'a' if key == 'cache build' else 'b'}. peak memory, distill KD ({key}) / reference loop KD",
            [ratio(key, t) for t in teachers],
            "<= 1.10",
        )
    row(
        "5c. peak memory, cache build / cache hit",
        [
            f"{mem('cache build', t) / mem('cache hit', t):.2f}"
            if mem("cache hit", t) and mem("cache build", t)
            else "-"
            for t in teachers
        ],
        "<= 1.10",
    )
    row(
        "5. peak memory, distill KD (live) / reference loop KD",
        [
            f"{rss[f'distill KD {t} (live teacher)'] / rss[f'plain loop KD {t}']:.2f} "
            f"({rss[f'distill KD {t} (live teacher)']:.0f} / {rss[f'plain loop KD {t}']:.0f} MB)"
            for t in teachers
        ],
        "<= 1.10",
    )
    row(
        "5'. the same, teacher kept in PyTorch",
        [
            f"{rss[f'distill KD {t} (live torch teacher)'] / rss[f'plain loop KD {t}']:.2f} "
            f"({rss[f'distill KD {t} (live torch teacher)']:.0f} / {rss[f'plain loop KD {t}']:.0f} MB)"
            for t in teachers
        ],
        "<= 1.10",
    )
    text = "\n".join(lines) + "\n"
    (out / "bench_speed.md").write_text(text)
    (out / "bench_speed.json").write_text(
        json.dumps(
            {
                "results": results,
                "memory_kb": memory,
                "sweep_wall": sweep_wall,
                "torchdistill_sweep_wall": td_wall,
                "sweep_members_epochs": members_epochs,
            },
            indent=1,
        )
    )
    print(text)


if __name__ == "__main__":
    main()
