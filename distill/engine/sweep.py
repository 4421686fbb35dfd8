"""Collect the runs of a sweep folder into one comparison: per run, and per setting over seeds."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distill.engine.runs import read_json
from distill.io import atomic_write


@dataclass
class SweepRun:
    path: Path
    overrides: dict[str, str]
    summary: dict[str, Any]


def _overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        items = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError):
        items = []
    return dict(item.split("=", 1) for item in items if "=" in item)


def collect(root: Path) -> list[SweepRun]:
    """Every finished run (a folder with summary.json) below ``root``, in folder order."""
    runs = []
    for path in sorted(Path(root).glob("**/summary.json"), key=lambda p: [_natural(x) for x in p.parts]):
        summary = read_json(path)
        if summary:
            runs.append(SweepRun(path.parent, _overrides(path.parent), summary))
    return runs


def _natural(part: str) -> tuple:
    return (0, int(part), "") if part.isdigit() else (1, 0, part)


def swept_keys(runs: list[SweepRun]) -> list[str]:
    """Override keys whose value differs between runs (in first-seen order)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run.overrides if k not in keys]
    return [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def group(runs: list[SweepRun], keys: list[str]) -> list[dict[str, Any]]:
    """One row per setting of ``keys`` other than ``seed``, with mean and std over its runs."""
    setting_keys = [k for k in keys if k != "seed"]
    rows: dict[tuple, list[SweepRun]] = {}
    for run in runs:
        rows.setdefault(tuple(run.overrides.get(k) for k in setting_keys), []).append(run)
    out = []
    for values, members in rows.items():
        accs = [m.summary["test_acc"] for m in members if m.summary.get("test_acc") is not None]
        acc_mean, acc_std = _mean_std(accs)
        val_mean, _ = _mean_std([m.summary["val_acc"] for m in members if m.summary.get("val_acc") is not None])
        teacher, _ = _mean_std(
            [m.summary["teacher_test_acc"] for m in members if m.summary.get("teacher_test_acc") is not None]
        )
        secs, _ = _mean_std([m.summary.get("train_seconds", 0.0) for m in members])
        out.append(
            {
                **dict(zip(setting_keys, values)),
                "runs": len(members),
                "test_acc_mean": acc_mean,
                "test_acc_std": acc_std,
                "val_acc_mean": val_mean,
                "teacher_test_acc": teacher,
                "train_seconds_mean": secs,
            }
        )
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def run_rows(runs: list[SweepRun], keys: list[str]) -> list[dict[str, Any]]:
    fields = ("test_acc", "last_test_acc", "val_acc", "teacher_test_acc", "train_seconds", "train_images_per_s")
    return [
        {"run": str(r.path), **{k: r.overrides.get(k) for k in keys}, **{f: r.summary.get(f) for f in fields}}
        for r in runs
    ]


def _x_axis(ax: Any, key: str, xs: list[Any]) -> None:
    """Ticks at the swept values; a log scale where they grow geometrically (base 2 for a temperature)."""
    if not xs or any(isinstance(x, str) for x in xs):
        return  # categories: matplotlib ticks each one already
    values = sorted(set(xs))
    from matplotlib.ticker import NullLocator

    positive = values[0] > 0
    if positive and key.endswith("temperature") and len(values) > 1:
        ax.set_xscale("log", base=2)
    elif positive and len(values) > 2 and values[-1] / values[0] >= 10:
        ax.set_xscale("log")
    if len(values) <= 12:
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.xaxis.set_minor_locator(NullLocator())


def plot(
    rows: list[dict[str, Any]],
    key: str,
    path: Path,
    title: str | None = None,
    alone: dict[str, Any] | None = None,
) -> Path | None:
    """Test accuracy (mean, with std bars) against the swept ``key``; one line per other setting, the
    teacher's accuracy and, when ``alone`` (``student_alone`` of a summary) is given, the student
    trained alone with its spread: what distillation bought."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def as_num(v: Any) -> Any:
        try:
            return float(v)
        except (TypeError, ValueError):
            return v

    others = [
        k
        for k in rows[0]
        if k not in (key,)
        and k not in {"runs", "test_acc_mean", "test_acc_std", "val_acc_mean", "teacher_test_acc", "train_seconds_mean"}
    ]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    series: dict[tuple, list[dict]] = {}
    for row in rows:
        series.setdefault(tuple(row[k] for k in others), []).append(row)
    all_xs = []
    for label, members in series.items():
        members.sort(key=lambda r: (isinstance(as_num(r[key]), str), as_num(r[key])))
        xs = [as_num(r[key]) for r in members]
        xs = [str(x) for x in xs] if any(isinstance(x, str) for x in xs) else xs
        all_xs += xs
        ax.errorbar(
            xs,
            [r["test_acc_mean"] for r in members],
            yerr=[r["test_acc_std"] for r in members],
            marker="o",
            capsize=3,
            label=", ".join(f"{k}={v}" for k, v in zip(others, label)) or "distilled student",
        )
    _x_axis(ax, key, all_xs)
    teacher = [r["teacher_test_acc"] for r in rows if r["teacher_test_acc"] is not None]
    if teacher:
        acc = statistics.fmean(teacher)
        ax.axhline(acc, color="0.3", linestyle="--", label=f"teacher ({acc:.3f})")
    if alone:
        mean, std = alone["test_acc_mean"], alone.get("test_acc_std") or 0.0
        runs = alone["runs"]
        ax.axhline(mean, color="tab:red", linestyle=":", label=f"student alone ({mean:.3f} ± {std:.3f}, {runs} runs)")
        if std:
            ax.axhspan(mean - std, mean + std, color="tab:red", alpha=0.12, lw=0)
    ax.set_xlabel(key)
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    # under the axes, where it covers neither the teacher's line nor a point
    fig.legend(fontsize=8, loc="outside lower center", ncol=min(3, len(ax.get_legend_handles_labels()[0])))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write(path, buf.getvalue())
