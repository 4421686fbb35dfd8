"""Run folders: what a run writes about itself, and finding earlier runs by what they trained."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch
import torchvision

from distill.engine.files import atomic_write


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


def env_info(device: torch.device) -> dict[str, Any]:
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
    for path in Path(root).glob("**/summary.json"):
        summary = read_json(path)
        if summary and summary.get("stage") == stage:
            found.append((path.parent, summary))
    found.sort(key=lambda item: item[0].joinpath("summary.json").stat().st_mtime, reverse=True)
    return found


def find_runs(root: Path, stage: str, **match: Any) -> list[tuple[Path, dict]]:
    """Finished runs whose summary has every ``key == value`` of ``match``, newest first."""
    return [(p, s) for p, s in finished_runs(root, stage) if all(s.get(k) == v for k, v in match.items())]
