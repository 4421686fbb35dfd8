"""distill: config-driven knowledge distillation for PyTorch."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def config_dir() -> str:
    """The folder of the shipped Hydra configs: inside the installed package, or ``conf/`` of a checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).resolve().parent.parent / "conf")
