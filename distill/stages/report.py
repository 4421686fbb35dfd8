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
from distill.engine.sweep import collect, group, plot, run_rows, swept_keys, to_csv
from distill.engine.tables import print_table
from distill.errors import UserError
from distill.io import atomic_write

log = logging.getLogger("distill")


def validate(cfg: DictConfig) -> None:
    path = Path(str(cfg.dir))
    if not path.is_dir():
        raise UserError(f"dir={path} is not a folder; give a sweep folder such as outputs/multirun/<date>/<time>")
    if not any(path.glob("**/summary.json")):
        raise UserError(f"no finished runs (summary.json) under {path}")


def report(root: Path) -> dict[str, Any]:
    """Prints the comparison of the runs under ``root`` and writes sweep.csv, sweep_runs.csv, sweep.png."""
    runs = collect(root)
    keys = swept_keys(runs)
    rows = group(runs, keys)
    atomic_write(root / "sweep.csv", to_csv(rows))
    atomic_write(root / "sweep_runs.csv", to_csv(run_rows(runs, keys)))
    setting_keys = [k for k in keys if k != "seed"]
    png = plot(rows, setting_keys[0], root / "sweep.png") if setting_keys else None

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
    log.info("wrote %s, %s%s", root / "sweep.csv", root / "sweep_runs.csv", f", {png}" if png else "")
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
