"""How long ``distill`` takes to answer before any work: help, a refused typo, ``--cfg job``, a TAB.

    python scripts/bench_startup.py                       # prints the table
    python scripts/bench_startup.py --save after.json     # ... and keeps the figures
    python scripts/bench_startup.py --compare before.json # a before -> after table

Each command runs as a subprocess (``python -m distill ...``, an interpreter start included, as a user
types it) in an empty temporary folder: one untimed warm-up, then ``--repeats`` timed runs; the table
shows the median wall-clock time and, in brackets, the median CPU time (user + system) of the
process. The load average is printed before and after: on a busy machine the wall-clock figures are
slower than an idle one's, the CPU figures much less so. To measure another checkout with the same
interpreter, put it first on the path: ``PYTHONPATH=/tmp/before python scripts/bench_startup.py --save before.json``.

Targets (issue 19): help under 1.5 s; a refused typo and ``--cfg job`` under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (label, arguments after `distill`, environment added, target seconds)
COMMANDS: list[tuple[str, list[str], dict[str, str], float | None]] = [
    ("distill --help", ["--help"], {}, 1.5),
    ("distill train --help", ["train", "--help"], {}, 1.5),
    ("distill train trainer.epohcs=3 (typo'd key)", ["train", "trainer.epohcs=3"], {}, 2.0),
    ("distill train student=mobilnet (typo'd option)", ["train", "student=mobilnet"], {}, 2.0),
    ("distill train trainer.device=cpuu (typo'd value)", ["train", "trainer.device=cpuu"], {}, 2.0),
    ("distill train --epochs 3 (argparse habit)", ["train", "--epochs", "3"], {}, 2.0),
    ("distill train --cfg job", ["train", "--cfg", "job"], {}, 2.0),
    ("distill models", ["models"], {}, None),
    ("TAB: distill train student=mob<TAB>", ["-sc", "query=bash"], {"COMP_LINE": "distill train student=mob"}, None),
]


def time_one(args: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system: what a busy machine inflates least) and exit code."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "distill", *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    return wall, cpu, done.returncode


def measure(repeats: int) -> dict[str, dict]:
    results = {}
    with tempfile.TemporaryDirectory() as cwd:
        for label, args, env, target in COMMANDS:
            time_one(args, env, cwd)  # warm-up: the file cache, .pyc files
            runs = [time_one(args, env, cwd) for _ in range(repeats)]
            results[label] = {
                "median_s": statistics.median(wall for wall, _, _ in runs),
                "cpu_s": statistics.median(cpu for _, cpu, _ in runs),
                "exit": runs[-1][2],
                "target_s": target,
            }
            r = results[label]
            print(f"  {label}: {r['median_s']:.2f} s, cpu {r['cpu_s']:.2f} s (exit {r['exit']})", file=sys.stderr)
    return results


def _cell(r: dict | None) -> str:
    return f"{r['median_s']:.2f} (cpu {r['cpu_s']:.2f}) exit {r['exit']}" if r else "n/a"


def table(after: dict[str, dict], before: dict[str, dict] | None) -> str:
    """A markdown table: wall-clock median (CPU median) and exit code of each command."""
    head = "| command | before: s (cpu s), exit | after: s (cpu s), exit | target s |"
    if not before:
        head = "| command | s (cpu s), exit | target s |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, r in after.items():
        target = f"< {r['target_s']}" if r["target_s"] else ""
        if before:
            rows.append(f"| `{label}` | {_cell(before.get(label))} | {_cell(r)} | {target} |")
        else:
            rows.append(f"| `{label}` | {_cell(r)} | {target} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--save", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--compare", type=Path, help="a --save file of an earlier measurement (the 'before')")
    args = parser.parse_args()

    probe = subprocess.run(
        [sys.executable, "-c", "import distill; print(distill.__file__)"], capture_output=True, text=True
    )
    load_before = os.getloadavg()
    results = measure(args.repeats)
    load_after = os.getloadavg()
    print(f"distill imported from: {probe.stdout.strip()}")
    print(f"python: {sys.executable}; cores: {os.cpu_count()}; median of {args.repeats} after one warm-up")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    before = json.loads(args.compare.read_text()) if args.compare else None
    print(table(results, before))
    if args.save:
        args.save.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
