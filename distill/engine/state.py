"""A training run's state: what ``checkpoints/state.pt`` holds so that a resumed run ends exactly
where the uninterrupted one would, and the signals that stop a run after its current step."""

from __future__ import annotations

import json
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.engine import distributed as dist
from distill.engine.loop import Running
from distill.errors import UserError

log = logging.getLogger("distill")

STATE_FORMAT = "distill-state"
STATE_VERSION = 2


class Interrupted(Exception):  # noqa: N818  (a signal, not an error)
    """SIGINT or SIGTERM arrived: the step finished, the state is saved, the run can resume."""

    def __init__(self, signum: int, run_dir: Path) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.run_dir = signum, run_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Signals:
    """Turns SIGINT/SIGTERM into a flag the training loop checks after each step (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> Signals:
        # under torchrun the ranks would not stop at the same step: the default handlers stay
        if threading.current_thread() is threading.main_thread() and dist.world_size() == 1:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:  # a second Ctrl-C: stop now, the last saved state stays
            raise KeyboardInterrupt
        self.received = signum
        log.warning("%s: finishing this step and saving the state (again to stop at once)", signal.Signals(signum).name)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def check_state(state: dict, path: Path) -> None:
    """Refuses a state file of another format or version (one line, no traceback)."""
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise UserError(
            f"{path} is not a distill training state of version {STATE_VERSION} "
            f"(format {state.get('format')!r}, version {state.get('version')!r}); it cannot be resumed"
        )


@dataclass
class Trained:
    """What a run trains and how: the parts whose state is saved with every state file."""

    model: nn.Module
    loss_fn: nn.Module  # its connectors, heads and memory banks
    peers: list[nn.Module]  # online peers
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None


@dataclass
class TrainState:
    """Where a run is and what it has measured so far."""

    epoch: int = 0  # epochs finished
    step: int = 0  # steps finished in the current epoch (0 at an epoch's end)
    running: Running | None = None  # the current epoch's running figures, within an epoch
    best_val_acc: float = -1.0
    best_epoch: int = -1
    images: int = 0  # training images seen, and the seconds they took
    seconds: float = 0.0
    calibrated: int = 0  # images the last BatchNorm recalibration used
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl's lines

    def to_dict(self, trained: Trained, seed: int, device: torch.device, extra: dict | None) -> dict[str, Any]:
        """The state file's contents (format ``distill-state`` version 2)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "step": self.step,
            "running": self.running.as_dict() if self.running is not None else None,
            "model": trained.model.state_dict(),
            "loss_fn": trained.loss_fn.state_dict(),
            "peers": [p.state_dict() for p in trained.peers],
            "optimizer": trained.optimizer.state_dict(),
            "scheduler": trained.scheduler.state_dict(),
            "scaler": trained.scaler.state_dict() if trained.scaler is not None else None,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "images": self.images,
            "seconds": self.seconds,
            "calibrated": self.calibrated,
            "seed": seed,
            "rng": _rng_state(device),
            "metrics": [json.dumps(r) for r in self.rows],
            "extra": extra or {},
        }

    @classmethod
    def restore(cls, state: dict[str, Any], trained: Trained, device: torch.device) -> TrainState:
        """Loads a state file's contents into ``trained`` and the RNG; returns where the run was."""
        trained.model.load_state_dict(state["model"])
        trained.loss_fn.load_state_dict(state["loss_fn"])
        for peer, peer_state in zip(trained.peers, state["peers"]):
            peer.load_state_dict(peer_state)
        trained.optimizer.load_state_dict(state["optimizer"])
        trained.scheduler.load_state_dict(state["scheduler"])
        if trained.scaler is not None and state.get("scaler"):
            trained.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], device)
        return cls(
            epoch=state["epoch"],
            step=state["step"],
            running=Running(**state["running"]) if state["step"] else None,
            best_val_acc=state["best_val_acc"],
            best_epoch=state["best_epoch"],
            images=state["images"],
            seconds=state["seconds"],
            calibrated=state["calibrated"],
            rows=[json.loads(r) for r in state["metrics"]],
        )
