"""What a run prints while it trains, and how log lines reach the console.

On a terminal: a live rich bar per run (loss, accuracy, images/s, ETA) and rich's log lines. Off a
terminal (a batch job's log file, CI, a pipe), where a live bar prints nothing until it ends and rich
wraps lines at 80 columns: a plain progress line every ``trainer.log_every_s`` seconds, and log lines
as written, with ISO timestamps.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
log = logging.getLogger("distill")

# Off a terminal: the format of Hydra's own lines ("[2026-12-02 14:03:12,345][HYDRA] ..."), level for name.
PLAIN_FORMAT = "[%(asctime)s][%(levelname)s] %(message)s"


def console_handler() -> logging.Handler:
    """The console's log handler (``conf/hydra/job_logging``): rich's on a terminal, where its lines
    and the live bar share the screen; off a terminal, plain lines to stdout, never wrapped."""
    if Console().is_terminal:  # rich's own test of stdout (honours FORCE_COLOR, TTY_COMPATIBLE, ...)
        from rich.logging import RichHandler

        return RichHandler(show_path=False, rich_tracebacks=False)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    return handler


class EpochProgress:
    """Context manager around one training run's progress display.

    Args:
        enabled: ``auto`` shows the live bar only when stderr is a terminal; ``on``/``off`` force it.
        log_every_s: without the bar, a progress line is logged every this many seconds (0: none).
    """

    def __init__(self, total_epochs: int, steps_per_epoch: int, enabled: str = "auto", log_every_s: float = 0) -> None:
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
        self._every = 0.0 if show else float(log_every_s)
        self._done = self._start = 0  # steps done in the run, and when this process started (a resume skips)
        self._t0 = self._last = 0.0

    def __enter__(self) -> EpochProgress:
        self._progress.start()
        self._task = self._progress.add_task("epoch", total=self.total_epochs * self.steps, loss=0.0, acc=0.0, ips=0.0)
        self._t0 = self._last = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def skip(self, steps: int) -> None:
        """Marks ``steps`` as done already (a resumed run)."""
        self._progress.update(self._task, completed=steps)
        self._done = self._start = steps

    def step(self, epoch: int, loss: float, acc: float, images_per_s: float) -> None:
        self._progress.update(
            self._task,
            advance=1,
            description=f"epoch {epoch + 1}/{self.total_epochs}",
            loss=loss,
            acc=acc,
            ips=images_per_s,
        )
        self._done += 1
        now = time.monotonic()
        if self._every > 0 and now - self._last >= self._every:
            self._last = now
            self._line(epoch, loss, acc, images_per_s, now)

    def _line(self, epoch: int, loss: float, acc: float, images_per_s: float, now: float) -> None:
        # the ETA counts the evaluations between epochs as they have cost so far
        per_step = (now - self._t0) / max(self._done - self._start, 1)
        eta = timedelta(seconds=round(per_step * (self.total_epochs * self.steps - self._done)))
        log.info(
            "epoch %d/%d  step %d/%d  loss %.4f  acc %.3f  %.0f img/s  ETA %s",
            epoch + 1,
            self.total_epochs,
            self._done - epoch * self.steps,
            self.steps,
            loss,
            acc,
            images_per_s,
            eta,
        )
