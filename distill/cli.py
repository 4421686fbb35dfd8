"""``distill <stage> [hydra overrides]``: pops the stage word and hands the rest to that stage's Hydra app.

Before Hydra starts, every job's config is composed once and validated, so a typo or an out-of-range
value is one line on stderr with exit code 2, before any folder is created or any run of a sweep
is spent. ``-m``, ``--cfg job``, ``--help`` and tab completion are Hydra's own.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from distill import __version__
from distill.config.overrides import compose_collecting, explain, validate_all
from distill.config.resume import resume_args
from distill.engine.runs import new_stamp
from distill.errors import UserError, closest, first_line
from distill.stage_names import STAGES, stage_module

_POSITIONAL = {"eval": "run", "export": "run", "report": "dir", "cache": "action"}
# Flags after which Hydra's own handling should run untouched (help, config printing, completion).
_NO_PRECHECK = (
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--config-dir",
    "-cd",
    "--config-name",
    "-cn",
    "--config-path",
    "-cp",
    "--resolve",
    "--experimental-rerun",
)


def _usage() -> str:
    lines = [
        f"distill {__version__}: knowledge distillation from the command line",
        "",
        "usage: distill <stage> [key=value ...] [-m] [--help] [--cfg job]",
        "",
        "stages:",
    ]
    lines += [f"  {name:<8} {text}" for name, text in STAGES.items()]
    lines += ["", "`distill <stage> --help` lists every config group and option of a stage."]
    return "\n".join(lines)


def _fail(stage: str, message: str) -> None:
    print(f"distill {stage}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job a (multi)run will start."""
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeper = next((o.value() for o in parsed if o.key_or_group == "hydra/sweeper"), "basic")
    if sweeper != "basic":  # e.g. Optuna: trials are drawn later; check the config without the search ranges
        return [[o.input_line for o in parsed if not o.is_sweep_override()]]
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_job(stage: str, compose: Any, job: list[str]) -> Any:
    """One job's config, ``compose(job)`` inside an initialized Hydra, checked as the command line
    checks it (also by ``distill.api``); a problem raises UserError with the line the CLI prints."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from distill.config.checks import missing_keys

    module = importlib.import_module(stage_module(stage))  # also registers the config schemas
    # ValueError: Hydra's own for e.g. `teacher=0` (a group given a number)
    try:
        cfg, problems = compose_collecting(compose, job)
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
        raise UserError(explain(stage, e, job)) from None
    need = missing_keys(cfg)
    if need:
        raise UserError(f"{', '.join(need)} must be given, e.g. {need[0]}=...")
    try:
        validate_all(module.validate, cfg, problems)
    except OmegaConfBaseException as e:  # e.g. an interpolation ${...} that points nowhere
        raise UserError(first_line(e)) from None
    return cfg


def precheck(stage: str, args: list[str]) -> None:
    """Composes and validates every job's config; exits 2 with one line on the first problem."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from distill import config_dir

    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=stage):
        # ValueError: Hydra's own for e.g. `teacher=0` (a group given a number)
        try:
            jobs = _jobs(overrides, multirun)
        except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
            _fail(stage, explain(stage, e, overrides))
        for job in jobs:
            try:
                check_job(stage, lambda o: compose(config_name=stage, overrides=o), job)
            except UserError as e:
                _fail(stage, f"{e} (in job {' '.join(job)})" if multirun else str(e))


def _torchrun_args(stage: str, args: list[str]) -> list[str]:
    """Under torchrun: joins the process group, gives every rank rank 0's run folder, and keeps
    ranks other than 0 from writing Hydra's files and logs (they train; rank 0 writes)."""
    from distill.engine import distributed as dist

    if not dist.launched_by_torchrun():
        return args

    dist.init()
    stamp = dist.broadcast_object(new_stamp())
    given = {a.split("=", 1)[0] for a in args}
    extra = []
    if "hydra.run.dir" not in given:
        extra.append(f"hydra.run.dir=${{paths.root}}/{stage}/{stamp}")
    if "hydra.sweep.dir" not in given:
        extra.append(f"hydra.sweep.dir=${{paths.root}}/multirun/{stamp}")
    if dist.rank() != 0:
        extra += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    return [*args, *extra]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    if argv[0] == "--version":
        print(__version__)
        return
    stage, args = argv[0], argv[1:]
    if stage not in STAGES:
        _fail(stage, f"unknown stage {stage!r}{closest(stage, STAGES)}; stages: {', '.join(STAGES)}")
    if stage in _POSITIONAL and args and not args[0].startswith("-") and "=" not in args[0]:
        args[0] = f"{_POSITIONAL[stage]}={args[0]}"
    if stage == "cache":  # a key prefix such as 788e91 or 0123 is text, not the number Hydra would read
        args = [f"entry='{a[6:]}'" if a.startswith("entry=") and a[6:7] not in ("'", '"') else a for a in args]
    # Hydra's parser wants -m before the overrides; users write it anywhere.
    args = [a for a in args if a in ("-m", "--multirun")] + [a for a in args if a not in ("-m", "--multirun")]
    if stage in ("train", "teacher") and any(a.startswith("resume=") for a in args):
        try:
            args = resume_args(stage, args)
        except UserError as e:
            _fail(stage, str(e))
    if not any(a.split("=")[0] in _NO_PRECHECK for a in args):
        precheck(stage, args)
    if stage in ("train", "teacher"):
        args = _torchrun_args(stage, args)
    module = importlib.import_module(stage_module(stage))
    sys.argv = [f"distill {stage}", *args]
    module.main()


if __name__ == "__main__":
    main()
