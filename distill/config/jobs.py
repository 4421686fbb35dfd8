"""One job's config, composed and checked as the command line checks it: shared by ``distill.cli``
(every job of a sweep, before anything runs) and ``distill.api`` (a config composed from Python)."""

from __future__ import annotations

import importlib
from typing import Any

from distill.errors import UserError, first_line
from distill.stage_names import stage_module


def register() -> None:
    """Registers the config groups made in code (models, typed schemas) in Hydra's ConfigStore."""
    importlib.import_module("distill.stages")


def compose_job(stage: str, compose: Any, job: list[str]) -> tuple[Any, list[str]]:
    """One job's config, ``compose(job)`` inside an initialized Hydra, and the problems of values of
    the wrong type set aside while composing (reported with the checks' own by :func:`validate_job`).
    Raises UserError with the line the CLI prints for an unknown key or option; imports no torch."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from distill.config.overrides import compose_collecting, explain

    register()
    # ValueError: Hydra's own for e.g. `teacher=0` (a group given a number)
    try:
        return compose_collecting(compose, job)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
        raise UserError(explain(stage, e, job)) from None


def quick_check(cfg: Any, problems: list[str]) -> None:
    """The checks that need no torch: keys left ``???``, a typo'd choice, a number out of range."""
    from distill.choices import check_values, missing_keys

    need = missing_keys(cfg)
    if need:
        raise UserError(f"{', '.join(need)} must be given, e.g. {need[0]}=...")
    quick = check_values(cfg)
    if quick:
        raise UserError("; ".join([*problems, *quick]))


def validate_job(stage: str, cfg: Any, problems: list[str]) -> None:
    """The stage's checks of a composed config (its module, torch and more, imported here); every
    problem, ``problems`` included, raises one UserError."""
    from omegaconf.errors import OmegaConfBaseException

    from distill.config.overrides import validate_all

    quick_check(cfg, problems)

    try:
        validate_all(importlib.import_module(stage_module(stage)).validate, cfg, problems)
    except OmegaConfBaseException as e:  # e.g. an interpolation ${...} that points nowhere
        raise UserError(first_line(e)) from None
