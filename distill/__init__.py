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


def load(run: str | Path, trust_code: bool | str | list[str] = False):
    """The model a run trained, in eval mode, its preprocessing inside: see :func:`distill.api.load`
    (the package's public entry point; the API itself lives in the top layer)."""
    from distill.api import load as load_run

    return load_run(run, trust_code=trust_code)
