"""Python API for notebooks and scripts: the same stages as the CLI, returning their summaries.

    from distill import api
    summary = api.run("train", overrides=["student=lenet5", "distill.temperature=2"])
    summary["test_acc"]

Configs are composed from the shipped ``conf/`` (or ``config_dir``) with Hydra's compose API,
checked exactly as on the command line (a bad value raises :class:`distill.errors.UserError` with
the CLI's one-line message), and the run is written to its own folder under ``paths.root``.
Sweeps (``-m``) are the CLI's; in Python, loop over ``run``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from distill.engine.runs import new_stamp
from distill.errors import UserError, closest, first_line
from distill.stage_names import STAGES, stage_module


def compose(stage: str, overrides: list[str] | tuple[str, ...] = (), config_dir: str | None = None):
    """The resolved-on-demand config ``distill <stage> OVERRIDES`` would run with."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import distill.stages  # noqa: F401  (registers every torchvision model name)
    from distill import config_dir as shipped

    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}{closest(stage, STAGES)}; stages: {', '.join(STAGES)}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(config_dir or shipped()).resolve()), version_base="1.3"):
        cfg = hydra_compose(config_name=stage, overrides=list(overrides), return_hydra_config=False)
    return cfg


def run(stage: str, overrides: list[str] | tuple[str, ...] = (), config_dir: str | None = None) -> dict[str, Any]:
    """Runs one stage like ``distill <stage> OVERRIDES`` and returns its summary as a dict.

    The run folder is ``<paths.root>/<stage>/<date>/<time>`` as on the command line (or
    ``paths.output_dir=...`` among the overrides).
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from distill.config.overrides import compose_collecting, validate_all
    from distill.models.user import trusting

    try:
        cfg, problems = compose_collecting(lambda o: compose(stage, o, config_dir), list(overrides))
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise UserError(first_line(e)) from None
    module = importlib.import_module(stage_module(stage))
    if problems:  # values of the wrong type, reported with every other problem of the config
        validate_all(module.validate, cfg, problems)
    if "paths" in cfg and not any(o.startswith("paths.output_dir=") for o in overrides):
        stamp = new_stamp()
        cfg.paths.output_dir = str(Path(str(cfg.paths.root)) / stage / stamp)
    from hydra.core.hydra_config import HydraConfig

    from distill.config.entry import API_OVERRIDES

    # not inside a Hydra app: an earlier command run in this process (a notebook, a test) left its
    # HydraConfig behind, which would make this run look like a member of that command's sweep
    HydraConfig.instance().cfg = None
    token = API_OVERRIDES.set(tuple(overrides))
    try:
        with trusting(cfg):
            return module.run(cfg)
    finally:
        API_OVERRIDES.reset(token)


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
