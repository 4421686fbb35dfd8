"""Run folders: what a run writes about itself, and finding earlier runs by what they trained."""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from distill.io import atomic_write

# A run's folder name under <paths.root>/<stage>/: date and time to the microsecond.
STAMP = "%Y-%m-%d/%H-%M-%S_%f"
# Keys a user may give when resuming a run (how it runs, not what it computes) ...
# trust_code: never replayed from the folder; the resume command grants it again (see config/resume.py)
RESUME_MAY_CHANGE = (
    "trainer.progress", "trainer.log_every_s", "trainer.threads", "trainer.num_workers", "trainer.save_every_steps",
    "trust_code",
)  # fmt: skip
# ... and every key a resumed run's config may differ in from the run it continues.
RESUME_FREE = ("resume", "paths.output_dir", *RESUME_MAY_CHANGE)


def new_stamp() -> str:
    """The folder name of a run started now (``STAMP``)."""
    return datetime.now().strftime(STAMP)


@dataclass(frozen=True)
class RunDir:
    """A run's folder and every file in it: the one place their names are spelled.

    ``config.yaml`` (the resolved config), ``summary.json`` (written last: a run with one has
    finished), ``metrics.jsonl`` (a line per epoch), ``env.json``, ``failed.json`` (a run that stopped
    on an error), Hydra's ``<stage>.log``, and ``checkpoints/`` with ``best.safetensors``,
    ``last.safetensors`` and the resumable ``state.pt``.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of_weights(cls, weights: str | Path) -> RunDir:
        """The run folder of ``RUN/checkpoints/*.safetensors``, else the folder the file is in."""
        weights = Path(weights)
        return cls(weights.parent.parent if weights.parent.name == "checkpoints" else weights.parent)

    config = property(lambda self: self.path / "config.yaml")
    summary = property(lambda self: self.path / "summary.json")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    env = property(lambda self: self.path / "env.json")
    failed = property(lambda self: self.path / "failed.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    best = property(lambda self: self.checkpoints / "best.safetensors")
    last = property(lambda self: self.checkpoints / "last.safetensors")
    state = property(lambda self: self.checkpoints / "state.pt")

    @property
    def finished(self) -> bool:
        return self.summary.is_file()


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: a config as dotted keys."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def write_json(path: Path, obj: Any) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def env_info(device) -> dict[str, Any]:
    """Versions, git commit and device of this run (``device``: a ``torch.device``)."""
    import torch
    import torchvision

    from distill import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "distill": __version__,
        "git_commit": _git_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def finished_runs(root: Path, stage: str) -> list[tuple[Path, dict]]:
    """Run folders under ``root`` of ``stage`` that finished (have a summary.json), newest first."""
    found = []
    for path in Path(root).glob(f"**/{RunDir(root).summary.name}"):
        summary = read_json(path)
        if summary and summary.get("stage") == stage:
            found.append((path.parent, summary))
    found.sort(key=lambda item: RunDir(item[0]).summary.stat().st_mtime, reverse=True)
    return found


def find_runs(root: Path, stage: str, **match: Any) -> list[tuple[Path, dict]]:
    """Finished runs whose summary has every ``key == value`` of ``match``, newest first."""
    return [(p, s) for p, s in finished_runs(root, stage) if all(s.get(k) == v for k, v in match.items())]
