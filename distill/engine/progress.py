"""A rich progress bar per epoch with loss, accuracy, images/s and ETA (none when not on a TTY)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


class EpochProgress:
    """Context manager around one training run's progress display.

    Args:
        enabled: ``auto`` shows the bar only when stderr is a terminal; ``on``/``off`` force it.
    """

    def __init__(self, total_epochs: int, steps_per_epoch: int, enabled: str = "auto") -> None:
        show = console.is_terminal if enabled == "auto" else enabled in ("on", True)
        self.steps = steps_per_epoch
        self.total_epochs = total_epochs
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f} {task.fields[ips]:>6.0f} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not show,
            transient=False,
        )
        self._task = None
        self._images = 0
        self._t0 = 0.0

    def __enter__(self) -> EpochProgress:
        self._progress.start()
        self._task = self._progress.add_task("epoch", total=self.total_epochs * self.steps, loss=0.0, acc=0.0, ips=0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def skip(self, steps: int) -> None:
        """Marks ``steps`` as done already (a resumed run)."""
        self._progress.update(self._task, completed=steps)

    def step(self, epoch: int, loss: float, acc: float, images_per_s: float) -> None:
        self._progress.update(
            self._task,
            advance=1,
            description=f"epoch {epoch + 1}/{self.total_epochs}",
            loss=loss,
            acc=acc,
            ips=images_per_s,
        )
