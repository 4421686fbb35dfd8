"""``distill report DIR``: one table comparing the runs of a sweep, a CSV and an accuracy plot.

Runs that differ only by ``seed`` are grouped: each setting shows mean ± std and how many seeds
stand behind it. Also called by Hydra at the end of every ``-m`` sweep.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from distill.config.entry import hydra_entry
from distill.engine.sweep import SweepRun, collect, group, plot, run_rows, swept_keys, to_csv
from distill.engine.tables import print_folder, print_table, teacher_far_below
from distill.errors import UserError
from distill.io import atomic_write

log = logging.getLogger("distill")


def validate(cfg: DictConfig) -> None:
    path = Path(str(cfg.dir))
    if not path.is_dir():
        raise UserError(f"dir={path} is not a folder; give a sweep folder such as outputs/multirun/<date>/<time>")
    if not any(path.glob("**/summary.json")):
        raise UserError(f"no finished runs (summary.json) under {path}")


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    """A row of sweep.csv as it is read: 4 decimals (sweep_runs.csv keeps every run's full figures)."""
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def _title(runs: list[SweepRun]) -> str:
    """What the sweep trained: data, teacher -> student, seeds (several values joined by /)."""

    def values(key: str) -> str:
        seen = [str(r.summary.get(key)) for r in runs if r.summary.get(key) is not None]
        return "/".join(dict.fromkeys(seen)) or "?"

    seeds = sorted({r.summary["seed"] for r in runs if r.summary.get("seed") is not None})
    pair = values("student") if values("teacher") == "?" else f"{values('teacher')} → {values('student')}"
    return f"{values('dataset')}: {pair}, seeds {', '.join(map(str, seeds))}"


def _alone(runs: list[SweepRun]) -> dict[str, Any] | None:
    """The student trained alone (matching alpha=0 runs) as the sweep's members found it: the most runs."""
    found = [r.summary["student_alone"] for r in runs if r.summary.get("student_alone")]
    return max(found, key=lambda a: a["runs"]) if found else None


def _teacher_warning(rows: list[dict[str, Any]], setting_keys: list[str]) -> None:
    """Warns when the teacher is far below the students of a setting (the setting furthest above it)."""
    rows = [r for r in rows if r["teacher_test_acc"] is not None and r["test_acc_mean"] is not None]
    if not rows:
        return
    top = max(rows, key=lambda r: r["test_acc_mean"] - r["teacher_test_acc"])
    setting = ", ".join(f"{k}={top[k]}" for k in setting_keys)
    warning = teacher_far_below(
        top["teacher_test_acc"], top["test_acc_mean"], f"the students it taught{f' with {setting}' if setting else ''}"
    )
    if warning:
        log.warning(warning)


def report(root: Path) -> dict[str, Any]:
    """Prints the comparison of the runs under ``root`` and writes sweep.csv, sweep_runs.csv, sweep.png."""
    runs = collect(root)
    keys = swept_keys(runs)
    rows = group(runs, keys)
    atomic_write(root / "sweep.csv", to_csv([_rounded(r) for r in rows]))
    atomic_write(root / "sweep_runs.csv", to_csv(run_rows(runs, keys)))
    setting_keys = [k for k in keys if k != "seed"]
    png = None
    if setting_keys:
        png = plot(rows, setting_keys[0], root / "sweep.png", _title(runs), _alone(runs))

    def acc(r: dict) -> str:
        return "-" if r["test_acc_mean"] is None else f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}"

    print_table(
        f"{len(runs)} runs in {root}" + (" (mean ± std over seeds)" if "seed" in keys else ""),
        [*setting_keys, "seeds", "test acc", "val acc", "teacher acc", "train s"],
        [
            [
                *(r[k] for k in setting_keys),
                r["runs"],
                acc(r),
                r["val_acc_mean"],
                r["teacher_test_acc"],
                r["train_seconds_mean"],
            ]
            for r in rows
        ],
    )
    if rows and max(r["runs"] for r in rows) == 1:
        log.warning(
            "one seed per setting: differences under ~0.5% on small test sets are noise; sweep seed=0,1,2 as well"
        )
    _teacher_warning(rows, setting_keys)
    log.info("wrote sweep.csv, sweep_runs.csv%s", ", sweep.png" if png else "")
    print_folder("sweep folder", root)
    return {"stage": "report", "runs": len(runs), "swept": keys, "rows": rows}


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    return report(Path(str(cfg.dir)))


class SweepReport(Callback):
    """Hydra callback: the report of a multirun, printed when its last job ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(str(config.hydra.sweep.dir))
        if any(root.glob("**/summary.json")):
            report(root)


main = hydra_entry("report", run)

if __name__ == "__main__":
    main()
