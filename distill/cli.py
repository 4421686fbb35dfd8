"""``distill <stage> [hydra overrides]``: pops the stage word and hands the rest to that stage's Hydra app.

Before Hydra starts, every job's config is composed once and validated, so a typo or an out-of-range
value is one line on stderr with exit code 2, before any folder is created or any run of a sweep
is spent. ``-m`` and ``--cfg job`` are Hydra's own; ``--help`` is distill's (:mod:`distill.config.help`,
Hydra's is ``--hydra-help``), and tab completion is Hydra's taught the stage word
(:mod:`distill.config.completion`).

Nothing heavy is imported before it is needed: help, completion and a refused override cost no
torch import (they read the configs only), so they answer in about a second.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from distill import __version__
from distill.config.jobs import compose_job, quick_check, register, validate_job
from distill.errors import UserError, closest
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


# Hydra's flags that show something and run nothing: Hydra's app is built without importing the stage.
_NO_RUN = ("--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc")
_COMPLETION = ("-sc", "--shell-completion")


def _usage() -> str:
    lines = [
        f"distill {__version__}: knowledge distillation from the command line",
        "",
        "usage: distill <stage> [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--help] [--cfg job]",
        "",
        "stages:",
    ]
    lines += [f"  {name:<8} {text}" for name, text in STAGES.items()]
    lines += [
        "",
        "other commands:",
        "  models   the models teacher= and student= take: distill models [PATTERN]",
        "",
        "`distill <stage> --help` lists a stage's config groups and every key with its default and meaning.",
        'Tab completion: eval "$(distill -sc install=bash)" (zsh: the same after bashcompinit; fish:',
        "distill -sc install=fish | source).",
    ]
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


def precheck(stage: str, args: list[str]) -> None:
    """Composes every job's config, then validates each; exits 2 with one line on the first problem.
    Composing all, then checking all without torch, refuses a typo in any job of a sweep before the
    stage's checks import torch."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from distill import config_dir
    from distill.config.overrides import explain

    register()
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]

    def where(job: list[str]) -> str:
        return f" (in job {' '.join(job)})" if multirun else ""

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=stage):
        # ValueError: Hydra's own for e.g. `teacher=0` (a group given a number)
        try:
            jobs = _jobs(overrides, multirun)
        except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
            _fail(stage, explain(stage, e, overrides))
        composed = []
        for job in jobs:
            try:
                composed.append(compose_job(stage, lambda o: compose(config_name=stage, overrides=o), job))
            except UserError as e:
                _fail(stage, f"{e}{where(job)}")
        for check in (quick_check, lambda cfg, problems: validate_job(stage, cfg, problems)):
            for job, (cfg, problems) in zip(jobs, composed):  # every job's quick checks before any imports torch
                try:
                    check(cfg, problems)
                except UserError as e:
                    _fail(stage, f"{e}{where(job)}")


def _torchrun_args(stage: str, args: list[str]) -> list[str]:
    """Under torchrun: joins the process group, gives every rank rank 0's run folder, and keeps
    ranks other than 0 from writing Hydra's files and logs (they train; rank 0 writes)."""
    from distill.engine import distributed as dist
    from distill.engine.runs import new_stamp

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


def _shows_only(args: list[str]) -> bool:
    """Whether Hydra will only show something (a config, its help, completions) and run nothing."""
    return any(a.split("=")[0] in _NO_RUN for a in args)


def _hydra_app(stage: str, args: list[str]) -> Callable[[], Any]:
    """The stage's ``@hydra.main``; for flags that run nothing, one built here, so the stage's module
    (and torch) is imported only if a run starts."""
    if not _shows_only(args):
        return importlib.import_module(stage_module(stage)).main
    from distill.config.entry import hydra_entry

    register()
    return hydra_entry(stage, lambda cfg: importlib.import_module(stage_module(stage)).run(cfg))


def _completion(args: list[str]) -> None:
    from distill.config.completion import shell_completion

    try:
        shell_completion(args, lambda stage: _hydra_app(stage, ["-sc"]))
    except UserError as e:
        _fail("-sc", str(e))


def _help(stage: str, args: list[str]) -> None:
    """distill's help of a stage; Hydra's own where other config folders are searched too."""
    if any(a.split("=")[0] in ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn") for a in args):
        sys.argv = [f"distill {stage}", *args]
        _hydra_app(stage, ["--hydra-help"])()
        return
    from distill.config.help import stage_help

    register()
    try:
        _show(stage_help(stage, [a for a in args if not a.startswith("-")]))
    except UserError as e:
        _fail(stage, str(e))


# Hydra runs one of these per command (hydra/_internal/utils.py refuses two with a traceback).
_MODES = {"-m": "-m", "--multirun": "-m", "--cfg": "--cfg", "-c": "--cfg", "--info": "--info", "-i": "--info"}


def _refuse_flags(stage: str, args: list[str]) -> None:
    """Refuses, in one line, two of Hydra's modes at once and ``--epochs 3`` (with the override to
    write instead: Hydra reads only ``key=value``)."""
    from distill.config.overrides import HYDRA_FLAGS, argparse_habit

    modes = sorted({_MODES[a.split("=")[0]] for a in args if a.split("=")[0] in _MODES})
    if len(modes) > 1:
        _fail(stage, f"{' and '.join(modes)} cannot be given together: Hydra does one of them per command")
    if all(not a.startswith("--") or a.split("=")[0] in HYDRA_FLAGS for a in args):
        return
    from hydra import initialize_config_dir

    from distill import config_dir

    register()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=stage):
        line = argparse_habit(stage, args)
    if line:
        _fail(stage, line)


def _show(text: str) -> None:
    """Prints ``text``; a reader that stops early (``| head``) is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout again at exit


def _command(argv: list[str]) -> bool:
    """Answers what is not a stage (help, version, completion, ``models``); False for a stage."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        _show(_usage())
    elif argv[0] == "--version":
        _show(__version__)
    elif argv[0] in _COMPLETION:
        _completion(argv[1:])
    elif argv[0] == "models":
        from distill.config.help import models_text

        _show(models_text(argv[1] if len(argv) > 1 else None))
    else:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _command(argv):
        return
    stage, args = argv[0], argv[1:]
    if stage not in STAGES:
        _fail(stage, f"unknown stage {stage!r}{closest(stage, [*STAGES, 'models'])}; stages: {', '.join(STAGES)}")
    if any(a in _COMPLETION for a in args):
        _completion([a for a in args if a not in _COMPLETION])
        return
    if stage in _POSITIONAL and args and not args[0].startswith("-") and "=" not in args[0]:
        args[0] = f"{_POSITIONAL[stage]}={args[0]}"
    if any(a in ("-h", "--help") for a in args):
        _help(stage, args)
        return
    _refuse_flags(stage, args)
    if stage == "cache":  # a key prefix such as 788e91 or 0123 is text, not the number Hydra would read
        args = [f"entry='{a[6:]}'" if a.startswith("entry=") and a[6:7] not in ("'", '"') else a for a in args]
    # Hydra's parser wants -m before the overrides; users write it anywhere.
    args = [a for a in args if a in ("-m", "--multirun")] + [a for a in args if a not in ("-m", "--multirun")]
    if stage in ("train", "teacher") and any(a.startswith("resume=") for a in args):
        from distill.config.resume import resume_args

        try:
            args = resume_args(stage, args)
        except UserError as e:
            _fail(stage, str(e))
    checked = not any(a.split("=")[0] in _NO_PRECHECK for a in args)
    if checked:
        precheck(stage, args)
    if stage in ("train", "teacher") and not _shows_only(args):
        args = _torchrun_args(stage, args)
    app = _hydra_app(stage, args)
    sys.argv = [f"distill {stage}", *args]
    with _jobs_composed(checked):
        app()


@contextlib.contextmanager
def _jobs_composed(checked: bool) -> Iterator[None]:
    """Within: Hydra's basic sweeper does not compose every job once more before launching them (its
    ``validate_batch_is_legal``, which its own comment calls "a bit slow for large jobs"): the
    precheck composed and checked each already (a 12-member sweep went from 1.71x to 1.68x its
    members' epochs without it)."""
    if not checked:
        yield
        return
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    original = BasicSweeper.validate_batch_is_legal
    BasicSweeper.validate_batch_is_legal = lambda self, batch: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        BasicSweeper.validate_batch_is_legal = original  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
