"""Rich tables, and the lines that judge them, printed at the end of a stage."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# Off a terminal (logs, CI, pipes) rich would wrap at 80 columns and cut layer names and paths; lines
# printed (not tables) are never wrapped by rich at all (soft_wrap), so a path can be copied whole.
console = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    console.print(table)


MODEL_COLUMNS = ("model", "test acc", "params", "size MB", "latency ms/img", "images/s")


def model_row(label: str, m: dict[str, Any]) -> list[Any]:
    """A row of :data:`MODEL_COLUMNS` from a model description (see ``engine.supervised.describe``)."""
    size = m.get("size_bytes")
    return [
        label,
        m.get("test_acc"),
        m.get("params"),
        None if size is None else round(size / 1e6, 3),
        m.get("latency_ms"),
        m.get("images_per_s"),
    ]


def print_folder(what: str, path: str | Path) -> None:
    """A stage's last line: the folder its run went to, or wrote its results into (``what``: "train
    run folder", "sweep folder", ...)."""
    console.print(f"{what}: {path}", markup=False, highlight=False)


# A student this far above its teacher says the teacher is undertrained (a student may beat it by less).
FAR_BELOW = 0.05


def teacher_far_below(
    teacher_acc: float | None, student_acc: float | None, student: str = "the student it taught"
) -> str | None:
    """A warning when the teacher's test accuracy is more than :data:`FAR_BELOW` under its student's."""
    if teacher_acc is None or student_acc is None or teacher_acc >= student_acc - FAR_BELOW:
        return None
    return (
        f"the teacher ({teacher_acc:.4f}) is far below {student} ({student_acc:.4f}): it looks "
        "undertrained, so its soft targets hold students back; train it longer (an automatic teacher takes "
        "trainer.epochs from the command line too) or give a better one with teacher.checkpoint=RUN"
    )
