"""Python API for notebooks and scripts: the same stages as the CLI, returning their summaries.

    from distill import api
    summary = api.run("train", ["student=lenet5", "distill.temperature=2"])
    summary["test_acc"]
    api.run("train", ["distill.alpha=0.5"], student=MyNet, dataset=my_splits)  # objects you have

Configs are composed from the shipped ``conf/`` (or ``config_dir``) with Hydra's compose API and
checked as on the command line: a bad value or an unknown key raises
:class:`distill.errors.UserError` with the CLI's one-line message. A run is started through Hydra
as ``distill <stage>`` starts it, so its folder holds the same files (``.hydra/``, ``<stage>.log``,
``config.yaml``, ...) and ``distill <stage> resume=RUN_DIR`` continues it. Sweeps (``-m``) are
the CLI's; in Python, loop over ``run``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distill.errors import UserError, closest
from distill.stage_names import STAGES

log = logging.getLogger("distill")


@contextlib.contextmanager
def _hydra(stage: str, config_dir: str | None) -> Iterator[None]:
    """Hydra initialized on the shipped configs (or ``config_dir``) for this block."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import distill.stages  # noqa: F401  (registers every torchvision model name)
    from distill import config_dir as shipped

    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}{closest(stage, STAGES)}; stages: {', '.join(STAGES)}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(config_dir or shipped()).resolve()), version_base="1.3"):
        yield


def _checked(stage: str, overrides: list[str], validate: bool = True):
    """The composed config, checked by the CLI's own functions; without ``validate``, only what
    composing finds (unknown keys and options, values of the wrong type), in the CLI's words."""
    from hydra import compose as hydra_compose

    from distill.config.jobs import compose_job, validate_job

    cfg, problems = compose_job(stage, lambda o: hydra_compose(config_name=stage, overrides=o), overrides)
    if validate:
        validate_job(stage, cfg, problems)
    elif problems:
        raise UserError("; ".join(problems))
    return cfg


def compose(stage: str, overrides: list[str] | tuple[str, ...] = (), config_dir: str | None = None, check: bool = True):
    """The config ``distill <stage> OVERRIDES`` would run with, checked as the command line checks it
    (a problem raises :class:`~distill.errors.UserError` with the CLI's line).

    Args:
        check: False to skip the stage's checks of values, files and this machine (a config meant
            for another machine: ``trainer.device=cuda``); unknown keys, options and values of the
            wrong type are refused all the same.
    """
    with _hydra(stage, config_dir):
        return _checked(stage, list(overrides), check)


def run(
    stage: str,
    overrides: list[str] | tuple[str, ...] = (),
    config_dir: str | None = None,
    *,
    student: Any = None,
    teacher: Any = None,
    dataset: Any = None,
) -> dict[str, Any]:
    """Runs one stage like ``distill <stage> OVERRIDES`` and returns its summary as a dict.

    The run folder is ``<paths.root>/<stage>/<date>/<time>`` as on the command line, or the
    ``paths.output_dir=...`` among the overrides.

    Args:
        student, teacher: your own network: an ``nn.Module`` class or a function that builds one,
            defined at the top level of a module or notebook (the run records its dotted path, as
            ``student._target_=mypkg.nets.Net`` would); it is called with the dataset's
            ``num_classes``, ``in_channels`` and ``image_size`` where its signature takes them.
        dataset: your data: a :class:`distill.data.base.Splits` or an object with its attributes
            (uint8 NCHW ``train_x``/``val_x``/``test_x``, their labels, ``classes``); the run names
            it ``dataset=python`` with a fingerprint of its contents.
    """
    from distill.config.resume import resume_args
    from distill.data import given

    overrides = list(overrides)
    data = given.as_splits(dataset) if dataset is not None else None
    targets = {
        role: _dotted_path(role, obj) for role, obj in (("student", student), ("teacher", teacher)) if obj is not None
    }
    with _hydra(stage, config_dir), given.providing(data) as key:
        if key is not None:
            from hydra.core.config_store import ConfigStore

            ConfigStore.instance().store(group="dataset", name=given.OPTION, node=given.config_node(data.augment))
        if stage in ("train", "teacher") and any(o.startswith("resume=") for o in overrides):
            # the run's own overrides are replayed, those naming the objects among them: trusted as given
            if targets and not any(o.split("=", 1)[0] == "trust_code" for o in overrides):
                overrides.append(f"trust_code=[{','.join(dict.fromkeys(targets.values()))}]")
            overrides = resume_args(stage, overrides)
        else:
            overrides = [*_object_overrides(targets, key, overrides), *overrides]
        _checked(stage, overrides)
        return _run_in_hydra(stage, overrides)


def _object_overrides(targets: dict[str, str], data_key: str | None, overrides: list[str]) -> list[str]:
    """``ROLE=custom ROLE._target_=<dotted path>`` for each network given as an object, and
    ``dataset=python dataset.fingerprint=<key>`` for given data."""
    from distill.data import given

    out = [o for role, path in targets.items() for o in (f"{role}=custom", f"{role}._target_={path}")]
    if data_key is not None:
        out += [f"dataset={given.OPTION}", f"dataset.fingerprint={data_key}"]
    for group in (*targets, *(["dataset"] if data_key is not None else [])):
        clash = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] in (group, f"{group}._target_")]
        if clash:
            raise UserError(f"{group} is given twice, as {group}= and in the overrides ({clash[0]}); give it once")
    return out


def _dotted_path(role: str, obj: Any) -> str:
    """Where ``obj`` (a class or function) is found again by name: ``module.qualname``."""
    from torch import nn

    from distill.models.user import is_target, resolve

    if isinstance(obj, nn.Module):
        raise UserError(
            f"{role}= takes the class of the network or a function that builds it, not a built "
            f"{type(obj).__name__}: distill builds it for the dataset's classes and channels"
        )
    if isinstance(obj, str) and is_target(obj):
        return obj
    path = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    try:
        found = resolve(path) if callable(obj) and is_target(path) else None
    except UserError:
        found = None
    if found is not obj:
        raise UserError(
            f"{role}={obj!r} cannot be found again by a name: give a class or function defined at the top level "
            "of a module or notebook (the run records where its network comes from, so that eval, export and "
            "resume can build it again)"
        )
    if path.startswith("__main__."):
        log.warning(
            "%s %s lives in this notebook or script: in another process (distill eval, export, resume) it "
            "cannot be imported; move it into a module to use the run from there",
            role,
            path,
        )
    return path


def _run_in_hydra(stage: str, overrides: list[str]) -> dict[str, Any]:
    """``distill <stage> OVERRIDES`` run by Hydra in this process: its folder, ``.hydra/`` and log
    file as on the command line; errors raise instead of exiting, and the logging set up for the
    run is taken down after it."""
    import importlib

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from distill.config.entry import API_OVERRIDES, _mark_failed
    from distill.models.user import trusting
    from distill.stage_names import stage_module

    module = importlib.import_module(stage_module(stage))

    def task(cfg):
        with trusting(cfg):
            try:
                return module.run(cfg)
            except Exception as e:  # noqa: BLE001 - raised below, past Hydra's "Error executing job" log
                if isinstance(e, UserError):
                    _mark_failed(cfg, e)
                return _Failed(e)

    given_dir = [o.split("=", 1)[1] for o in overrides if o.startswith("paths.output_dir=")]
    hydra_overrides = [f"hydra.run.dir={given_dir[-1]}"] if given_dir else []  # .hydra/ and the log there too
    # not inside a Hydra app: an earlier command run in this process (a notebook, a test) left its
    # HydraConfig behind, which would make this run look like a member of that command's sweep
    HydraConfig.instance().cfg = None
    token = API_OVERRIDES.set(tuple(o for o in overrides if not o.startswith("hydra.")))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        result = hydra.run(config_name=stage, task_function=task, overrides=[*overrides, *hydra_overrides]).return_value
    finally:
        API_OVERRIDES.reset(token)
        HydraConfig.instance().cfg = None
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    if isinstance(result, _Failed):
        raise result.error
    return result


class _Failed:
    """What a run raised, handed out of Hydra's job to be raised to the caller."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def load(run: str | Path, trust_code: bool | str | list[str] = False):
    """The model a run trained (its best weights; a run folder or a weights file), in eval mode.

    It takes float NCHW images in [0, 1] and carries its preprocessing (normalisation, channel
    repetition, resizing) inside; ``classes`` names its outputs in order and ``input_shape`` is the
    (channels, height, width) it was trained on. For the network alone, in its own library's form,
    see ``model.safetensors`` written by ``distill export``. Also ``distill.load``.

    Args:
        trust_code: for a model built by the user's own code (``student._target_``), the dotted
            path of that callable, named again (or a list of them), or True to import whatever the
            file names; a file alone never chooses what code to import.
    """
    from distill.engine.checkpoint import load_model
    from distill.models.user import trusting_targets

    named = () if isinstance(trust_code, bool) else (trust_code,) if isinstance(trust_code, str) else trust_code
    with trusting_targets(tuple(str(t) for t in named), everything=trust_code is True):
        model, spec, _, _ = load_model(run)
    model.classes = list(spec.classes)
    model.input_shape = (spec.in_channels, *spec.image_size)
    return model
