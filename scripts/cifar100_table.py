"""The CIFAR-100 distillation benchmark of CRD / mdistiller / DIST, run with distill's recipes.

    python scripts/cifar100_table.py --device cuda                       # the whole table (GPU, network)
    python scripts/cifar100_table.py --pairs vgg13_vgg8 --methods kd,dkd --epochs 24   # a short trial
    python scripts/cifar100_table.py --dry-run                           # the commands, run nothing

For each pair it trains the teacher once (``distill teacher experiment=cifar100_recipe``), then the
student alone (``distill train experiment=cifar100_<pair> distill.alpha=0``) and each method
(``distill train experiment=cifar100_<pair>_<method> teacher.checkpoint=<teacher run>``), every run
in its own folder under ``--out``; a finished run (it has ``summary.json``) is not run again, an
interrupted one is continued (``resume=``). It then prints, and writes to ``<out>/cifar100_table.md``,
each run's top-1 beside the published figure. Every run goes through the real CLI (``python -m
distill``) with ``dataset.download=true`` (fetches CIFAR-100 into ``--data`` once) and
``trainer.device`` as given; extra ``key=value`` arguments go to every run.

``--epochs N`` is a short trial: N epochs, the learning-rate milestones (150, 180, 210 of 240) and
DKD's 20-epoch warm-up scaled by N / 240. Its figures are not comparable with the published ones.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# pair -> (teacher, student); each has the experiments cifar100_<pair> and cifar100_<pair>_<method>
PAIRS: dict[str, tuple[str, str]] = {
    "resnet32x4_resnet8x4": ("resnet32x4", "resnet8x4"),
    "wrn_40_2_wrn_16_2": ("wrn_40_2", "wrn_16_2"),
    "vgg13_vgg8": ("vgg13", "vgg8"),
}
METHODS = ("kd", "dkd", "dist", "crd")
ROWS = ("teacher", "alone", *METHODS)

CRD = "CRD (Tian et al. 2020) Table 1 = github.com/HobbitLong/RepDistiller README"
MDISTILLER = "DKD (Zhao et al. 2022) = github.com/megvii-research/mdistiller README"
DIST = "DIST (Huang et al. 2022): github.com/hunto/DIST_KD README (76.31 +- 0.19)"
SOURCES = {"teacher": CRD, "alone": CRD, "kd": CRD, "crd": CRD, "dkd": MDISTILLER, "dist": DIST}
# Published top-1 (%) on the CIFAR-100 test set; None: not published for the pair. mdistiller's
# README repeats CRD's KD figures; DIST_KD reports DIST for resnet32x4 -> resnet8x4 only of these pairs.
PUBLISHED: dict[str, dict[str, float | None]] = {
    "resnet32x4_resnet8x4": {"teacher": 79.42, "alone": 72.50, "kd": 73.33, "dkd": 76.32, "dist": 76.31, "crd": 75.51},
    "wrn_40_2_wrn_16_2": {"teacher": 75.61, "alone": 73.26, "kd": 74.92, "dkd": 76.23, "dist": None, "crd": 75.48},
    "vgg13_vgg8": {"teacher": 74.64, "alone": 70.36, "kd": 72.98, "dkd": 74.68, "dist": None, "crd": 73.94},
}
FULL_EPOCHS = 240
MILESTONES = (150, 180, 210)
DKD_WARMUP = 20


@dataclass(frozen=True)
class Job:
    """One ``distill`` run of the table: its stage, its overrides (the run folder among them), its row."""

    pair: str
    row: str  # teacher | alone | a method
    stage: str
    args: tuple[str, ...]
    run_dir: Path

    def command(self) -> list[str]:
        """The command line, as a user types it (``distill`` is ``python -m distill``)."""
        return ["distill", self.stage, *self.args]


def common_args(args: argparse.Namespace) -> list[str]:
    """The overrides every run gets: where runs and data go, the device, the seed, a short trial's budget."""
    out = [f"paths.root={args.out}", f"seed={args.seed}", f"trainer.device={args.device}"]
    if args.download:
        out.append("dataset.download=true")
    if args.data:
        out.append(f"dataset.root={args.data}")
    if args.epochs:
        milestones = ",".join(str(max(1, round(m * args.epochs / FULL_EPOCHS))) for m in MILESTONES)
        out += [f"trainer.epochs={args.epochs}", f"sched.milestones=[{milestones}]"]
    return [*out, *args.overrides]


def jobs(args: argparse.Namespace) -> list[Job]:
    """The runs of the table, teachers first (each pair's methods read its teacher's run folder)."""
    out, common = Path(args.out), common_args(args)
    plan: list[Job] = []
    for pair in args.pairs:
        teacher, _ = PAIRS[pair]
        t_dir = out / "teacher" / teacher
        plan.append(
            Job(
                pair,
                "teacher",
                "teacher",
                ("experiment=cifar100_recipe", f"teacher={teacher}", *common, f"hydra.run.dir={t_dir}"),
                t_dir,
            )
        )
        for row in args.methods:
            run_dir = out / pair / row
            if row == "alone":
                given = (f"experiment=cifar100_{pair}", "distill.alpha=0")
            else:
                given = (f"experiment=cifar100_{pair}_{row}", f"teacher.checkpoint={t_dir}")
                if row == "dkd" and args.epochs:
                    given += (f"distill.method.warmup_epochs={max(1, round(DKD_WARMUP * args.epochs / FULL_EPOCHS))}",)
            plan.append(Job(pair, row, "train", (*given, *common, f"hydra.run.dir={run_dir}"), run_dir))
    return plan


def read_summary(run_dir: Path) -> dict | None:
    """A finished run's ``summary.json``, or None."""
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def run_job(job: Job, log_dir: Path) -> bool:
    """Runs ``job`` unless it finished before (continues it if it was interrupted); True when it has a summary."""
    if read_summary(job.run_dir) is not None:
        print(f"done already: {job.run_dir}", flush=True)
        return True
    resumable = (job.run_dir / "checkpoints" / "state.pt").is_file()
    args = [f"resume={job.run_dir}"] if resumable else list(job.args)
    log = log_dir / f"{job.pair}_{job.row}.log" if job.row != "teacher" else log_dir / f"teacher_{job.run_dir.name}.log"
    print(f"{'continuing' if resumable else 'running'}: {shlex.join(['distill', job.stage, *args])}", flush=True)
    start = time.perf_counter()
    with open(log, "a") as f:
        code = subprocess.run(
            [sys.executable, "-m", "distill", job.stage, *args], stdout=f, stderr=subprocess.STDOUT
        ).returncode
    print(f"  exit {code} after {time.perf_counter() - start:.0f} s (log: {log})", flush=True)
    return code == 0 and read_summary(job.run_dir) is not None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(plan: list[Job]) -> str:
    """The Markdown table of the runs in ``plan`` (finished or not) beside the published figures.

    ``top-1`` is the test accuracy of the run's best epoch by validation accuracy (the weights the
    run keeps), ``last`` that of its last epoch; ``delta`` is ``top-1`` minus the published figure.
    """
    lines = [
        "| pair | row | model | top-1 % | last % | published % | delta | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for job in plan:
        teacher, student = PAIRS[job.pair]
        summary = read_summary(job.run_dir) or {}
        top1 = None if summary.get("test_acc") is None else 100 * summary["test_acc"]
        last = None if summary.get("last_test_acc") is None else 100 * summary["last_test_acc"]
        published = PUBLISHED[job.pair].get(job.row)
        delta = "-" if top1 is None or published is None else f"{top1 - published:+.2f}"
        model = teacher if job.row == "teacher" else student
        source = SOURCES[job.row] if published is not None else "not published for this pair"
        cells = [job.pair, job.row, model, _pct(top1), _pct(last), _pct(published), delta, source]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated, of: {', '.join(PAIRS)}")
    ap.add_argument("--methods", default=",".join(ROWS[1:]), help=f"comma-separated, of: {', '.join(ROWS[1:])}")
    ap.add_argument("--epochs", type=int, default=None, help="a short trial of N epochs (default: the recipe's 240)")
    ap.add_argument("--out", default=None, help="the runs' folder, paths.root (outputs/cifar100_table[_<N>ep])")
    ap.add_argument("--data", default=None, help="dataset.root (default: distill's paths.data, ./data)")
    ap.add_argument("--device", default="auto", help="trainer.device: auto | cuda | cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-download", dest="download", action="store_false", help="do not pass dataset.download=true")
    ap.add_argument("--dry-run", action="store_true", help="print the commands; run nothing")
    ap.add_argument("overrides", nargs="*", help="key=value overrides for every run, e.g. trainer.num_workers=8")
    args = ap.parse_args(argv)
    args.pairs = [p for p in args.pairs.split(",") if p]
    args.methods = [m for m in args.methods.split(",") if m]
    for name, given, known in (("--pairs", args.pairs, PAIRS), ("--methods", args.methods, ROWS[1:])):
        unknown = [g for g in given if g not in known]
        if unknown:
            ap.error(f"{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.epochs is not None and args.epochs < 1:
        ap.error("--epochs must be >= 1")
    # a finished run is not run again: a trial's runs must not pass for the full recipe's, nor the reverse
    args.out = args.out or ("outputs/cifar100_table" + (f"_{args.epochs}ep" if args.epochs else ""))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = jobs(args)
    if args.dry_run:
        for job in plan:
            print(shlex.join(job.command()))
        return 0
    log_dir = Path(args.out) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    failed: list[Path] = []
    for job in plan:
        teacher_dir = Path(args.out) / "teacher" / PAIRS[job.pair][0]
        if job.row not in ("teacher", "alone") and teacher_dir in failed:
            failed.append(job.run_dir)  # nothing to distil from
        elif not run_job(job, log_dir):
            failed.append(job.run_dir)
    text = table(plan)
    (Path(args.out) / "cifar100_table.md").write_text(text + "\n")
    print(text)
    if failed:
        print(f"{len(failed)} run(s) failed or were skipped: {', '.join(map(str, failed))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
