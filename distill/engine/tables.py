"""Rich tables printed at the end of a stage."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

# Off a terminal (logs, CI, pipes) rich would wrap at 80 columns and cut layer names and paths.
console = Console(width=None if sys.stdout.isatty() else 200)


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
