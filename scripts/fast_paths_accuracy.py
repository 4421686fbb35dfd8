"""Does any fast path change the numbers? Each one switched off in turn, on mnist5k, 3 seeds.

    python scripts/fast_paths_accuracy.py --teacher-run RUN_DIR [--student mobilenet_v2 --epochs 8]

The defaults (teacher cache on, channels_last, bf16 teacher where the CPU has it, in-process
batches) are the reference; every other row turns one path off (or the optional torch.compile
on). Same teacher checkpoint, student, seeds and epochs everywhere. Writes ``fast_paths.md`` and
``.csv`` in ``--out``: test accuracy mean ± std, the per-seed accuracies, the largest per-seed
difference from the defaults, and the median training throughput.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

from distill.engine.settings import fast_bf16

# name -> (what it changes, overrides)
PATHS: dict[str, tuple[str, list[str]]] = {
    "defaults": ("every default fast path on", []),
    "no_cache": ("teacher run live every step (in onnxruntime on a CPU)", ["cache.enabled=false"]),
    "no_cache_torch": (
        "teacher run live every step in PyTorch",
        ["cache.enabled=false", "trainer.teacher_backend=torch"],
    ),
    "no_channels_last": ("default memory format", ["trainer.channels_last=false"]),
    "fp32_teacher": ("teacher outputs in float32 (no bf16)", ["trainer.teacher_precision=32"]),
    "workers_2": ("batches prepared by 2 worker processes", ["trainer.num_workers=2"]),
    "compile": ("torch.compile of the training steps", ["trainer.compile=true"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher-run", type=Path, required=True, help="a finished teacher run on the dataset")
    ap.add_argument("--teacher", default="resnet18")
    ap.add_argument("--student", default="mobilenet_v2")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    ap.add_argument("--out", type=Path, default=Path("outputs/fast_paths"))
    ap.add_argument("--threads", type=int, default=None, help="trainer.threads (default: torch's)")
    args = ap.parse_args()
    out = args.out.resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    common = [
        f"dataset={args.dataset}",
        f"teacher={args.teacher}",
        f"teacher.checkpoint={args.teacher_run.resolve()}",
        f"student={args.student}",
        f"trainer.epochs={args.epochs}",
        "trainer.progress=off",
        f"seed={args.seeds}",
        f"paths.root={out}",
        *([f"trainer.threads={args.threads}"] if args.threads else []),
    ]
    results: dict[str, list[dict]] = {}
    for name in ["defaults"] + [p for p in args.paths if p != "defaults"]:
        if name == "fp32_teacher" and not fast_bf16(torch.device("cpu")):
            print("fp32_teacher: skipped, the teacher already runs in float32 on this CPU (no native bf16)")
            continue
        folder = out / name
        if not list(folder.glob("*/summary.json")):
            with open(out / "logs" / f"{name}.log", "w") as log:
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "distill",
                        "train",
                        "-m",
                        *common,
                        *PATHS[name][1],
                        f"hydra.sweep.dir={folder}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if done.returncode != 0:
                sys.exit(f"{name} failed; see {out / 'logs' / (name + '.log')}")
        results[name] = sorted(
            (json.loads(p.read_text()) for p in folder.glob("*/summary.json")), key=lambda s: s["seed"]
        )
        accs = [s["test_acc"] for s in results[name]]
        print(f"{name}: {statistics.fmean(accs):.4f} ({', '.join(f'{a:.3f}' for a in accs)})", flush=True)
    ref = {s["seed"]: s["test_acc"] for s in results["defaults"]}
    rows = []
    for name, runs in results.items():
        accs = [s["test_acc"] for s in runs]
        rows.append(
            {
                "path": name,
                "what": PATHS[name][0],
                "overrides": " ".join(PATHS[name][1]) or "-",
                "test acc": f"{statistics.fmean(accs):.4f} ± {statistics.stdev(accs):.4f}"
                if len(accs) > 1
                else f"{accs[0]:.4f}",
                "per seed": ", ".join(f"{a:.3f}" for a in accs),
                "largest same-seed difference": f"{max(abs(s['test_acc'] - ref[s['seed']]) for s in runs):.3f}",
                "train img/s": f"{statistics.median(s['train_images_per_s'] for s in runs):.0f}",
                "teacher cache": runs[0].get("teacher_cache", {}).get("used", False) and "yes" or "no",
            }
        )
    with open(out / "fast_paths.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    head = (
        f"**{args.dataset}: teacher {args.teacher}, student {args.student}, {args.epochs} epochs, "
        f"seeds {args.seeds}**\n\n| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n"
    )
    text = head + "\n".join("| " + " | ".join(r.values()) + " |" for r in rows) + "\n"
    (out / "fast_paths.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
