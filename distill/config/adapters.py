"""From config nodes to the typed objects the parts take: trainer settings and seeds, the data, model
descriptions and keys, the run folder, the resolved config, the resumed state, the loggers."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from distill.config.checks import logger_names, plain_value, resolve_lr
from distill.data.base import Splits
from distill.engine.memo import remembered
from distill.engine.runs import RESUME_FREE, RunDir
from distill.engine.settings import TrainerSettings
from distill.engine.supervised import Recipe
from distill.errors import UserError
from distill.io import atomic_write
from distill.losses.combined import DistillLoss
from distill.losses.kd import KDLoss
from distill.models.registry import HF_PREFIX, TIMM_PREFIX
from distill.models.spec import ModelSpec

log = logging.getLogger("distill")

# Teachers known only by their outputs (conf/teacher/onnx.yaml, conf/teacher/logits.yaml).
BLACK_BOX = ("onnx", "logits")


def setup(cfg: DictConfig) -> tuple[TrainerSettings, torch.device]:
    """Seeds every generator, sets threads, picks the device."""
    settings = TrainerSettings(**OmegaConf.to_container(cfg.trainer, resolve=True))
    seed = int(cfg.seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    from distill.engine import distributed as dist

    return settings, dist.device_for(settings.torch_device())


def load_data(cfg: DictConfig) -> Splits:
    """Instantiates the dataset node of the user's own config (``_target_`` is a loader in
    ``distill.data``, or one of theirs through ``--config-dir``); a UserError the loader raises stays
    one line instead of Hydra's "Error in call to target ..." wrapping."""
    from hydra.errors import InstantiationException

    try:  # a sweep's members read the same data once (they differ in other settings)
        return remembered(sweep_scope(), data_key(cfg), lambda: instantiate(cfg.dataset, _convert_="all"))
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, UserError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise


def data_key(cfg: DictConfig) -> tuple:
    """What the data :func:`load_data` reads depends on: the resolved dataset config, and the seed for a
    loader of yours (distill's draw from generators of their own; yours might use the seeded global one)."""
    from distill.data.stored import builders

    node = OmegaConf.to_container(cfg.dataset, resolve=True)
    seed = None if node.get("_target_") in builders() else int(cfg.get("seed", 0))
    return ("data", json.dumps(node, sort_keys=True, default=str), seed)


def sweep_scope() -> str | None:
    """The sweep this run is a member of (its folder), when Hydra runs its members in this process;
    None otherwise. What the members share is remembered in this scope (:mod:`distill.engine.memo`)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return str(Path(str(HydraConfig.get().sweep.dir)).resolve())
    except (ImportError, ValueError):
        pass
    return None


def model_name(node: DictConfig | dict) -> str:
    """The registry name of a model node: ``name``, ``timm/<name>`` for ``source: timm``, or the user's
    ``_target_`` (a dotted path) when it is set."""
    if node.get("_target_") is not None:
        return str(node["_target_"])
    if node.get("source") == "hf":
        return f"{HF_PREFIX}{node['name']}"
    timm = _timm_record(node)  # timm: the plain name a weights file records (never hf-hub:)
    return f"{TIMM_PREFIX}{timm[0]}" if timm is not None else str(node["name"])


def _timm_record(node: DictConfig | dict) -> tuple[str, dict[str, Any], str | None] | None:
    """A ``source: timm`` node's recorded name, arguments and initial weights (None for other nodes);
    see :func:`distill.models.timm_models.timm_record`."""
    if node.get("_target_") is not None or node.get("source") != "timm":
        return None
    from distill.models.timm_models import timm_record

    kwargs = plain_value(node.get("kwargs")) or {}
    return timm_record(str(node["name"]), kwargs, node.get("pretrained"), node.get("weights"))


def model_kwargs(node: DictConfig | dict) -> dict[str, Any]:
    """A model node's constructor arguments (an ``hf-hub:`` timm model's config.json ``model_args`` first)."""
    timm = _timm_record(node)
    return timm[1] if timm is not None else plain_value(node.get("kwargs")) or {}


def model_weights(node: DictConfig | dict) -> str | None:
    """A model node's initial weights: ``weights`` (torchvision's by name, a local file for timm), or
    ``pretrained:<name>`` for a timm model with ``pretrained: true`` or an ``hf-hub:`` name."""
    timm = _timm_record(node)
    return timm[2] if timm is not None else node.get("weights")


def model_spec(node: DictConfig | dict, data: Splits) -> ModelSpec:
    kwargs = model_kwargs(node)
    if node.get("source") == "hf" and node.get("_target_") is None:  # the config, read once, goes with the model
        from distill.models.hf_models import resolve

        kwargs = {**kwargs, "config": resolve(str(node["name"]), list(data.classes))}
    return ModelSpec(
        name=model_name(node),
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=list(data.image_size),
        mean=list(data.mean),
        std=list(data.std),
        classes=list(data.classes),
        kwargs=kwargs,
    )


def model_key(node: DictConfig) -> dict[str, Any]:
    """What identifies a trained model's recipe: architecture, its arguments and its initial weights."""
    return {"name": model_name(node), "kwargs": model_kwargs(node), "weights": model_weights(node)}


def as_list(value: Any) -> list[str]:
    """A config value that may be one name or a list of names, as a list."""
    value = plain_value(value)
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def uses_teacher(cfg: DictConfig) -> bool:
    """Whether a ``train`` run needs a teacher: a logit term, or a method term that reads one."""
    d = cfg.distill
    if isinstance(d.alpha, (int, float)) and d.alpha > 0:
        return True
    beta = d.get("beta", 0)
    if d.get("method") is None or not isinstance(beta, (int, float)) or beta <= 0:
        return False
    return bool(getattr(get_class(str(d.method._target_)), "uses_teacher", True))


def build_loss(cfg: DictConfig, epochs: int) -> DistillLoss:
    """The ``train`` run's loss: hard labels, logit KD and the ``distill.method`` module, as configured."""
    d = cfg.distill
    kd = KDLoss(
        temperature=float(d.temperature),
        alpha=float(d.alpha),
        kind=str(d.loss),
        label_smoothing=float(d.get("label_smoothing", 0.0)),
        temperature_end=d.get("temperature_end"),
        epochs=epochs,
    )
    method = instantiate(d.method, _convert_="all") if d.get("method") is not None else None
    return DistillLoss(kd, method, float(d.get("beta", 0.0)))


def resolved_optim(cfg: DictConfig, model_key: str = "student") -> tuple[Any, str | None]:
    """``cfg.optim`` with ``lr=auto`` replaced by the rate of ``cfg[model_key]``'s family, and how it
    was found (None: lr was a number). Under torchrun the gradients are averaged over the ranks, so
    the batch a step learns from is all ranks' together."""
    from distill.engine import distributed as dist

    return resolve_lr(cfg.optim, cfg.get(model_key), int(cfg.trainer.batch_size) * dist.world_size())


def train_recipe(cfg: DictConfig, model_key: str = "student") -> Recipe:
    """The optimizer and schedule of ``optim`` / ``sched``, the seed, and the config for weights files.
    ``optim.lr=auto`` becomes the rate of the family of ``cfg[model_key]``, the model being trained
    (:mod:`distill.models.lr`)."""
    optim, how = resolved_optim(cfg, model_key)
    if how is not None:
        log.info("optim.lr=auto: %g (%s)", optim.lr, how)
    return Recipe(instantiate(optim), instantiate(cfg.sched), int(cfg.seed), plain_config(cfg))


def dataset_key(cfg: DictConfig) -> dict[str, Any]:
    """What identifies the data a model was trained on (whether it was downloaded does not matter)."""
    key = OmegaConf.to_container(cfg.dataset, resolve=True)
    key.pop("download", None)
    return key


def output_dir(cfg: DictConfig) -> Path:
    path = Path(str(cfg.paths.output_dir))
    path.mkdir(parents=True, exist_ok=True)
    return path


def plain_config(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def save_resolved_config(cfg: DictConfig, run_dir: Path) -> None:
    atomic_write(RunDir(run_dir).config, OmegaConf.to_yaml(cfg, resolve=True))


def resume_state(cfg: DictConfig) -> dict | None:
    """The saved state of the run ``cfg.resume`` names (None when not resuming), after checking that
    its format is ours and that this config is the one it ran with."""
    import yaml

    from distill.engine.checkpoint import load_state
    from distill.engine.state import check_state

    if cfg.get("resume") is None:
        return None
    root = Path(str(cfg.resume))
    state_file = RunDir(root).state
    if not state_file.is_file():
        raise UserError(f"{root} has no saved state (checkpoints/state.pt) to resume")
    state = load_state(state_file)
    check_state(state, state_file)
    from distill.engine.runs import flatten

    before = flatten(yaml.safe_load(RunDir(root).config.read_text()) or {})
    now = flatten(plain_config(cfg))
    for key in sorted(set(before) | set(now)):
        if key.startswith(RESUME_FREE) or before.get(key) == now.get(key):
            continue
        raise UserError(
            f"cannot resume {root}: {key} was {before.get(key)!r} when it ran and is {now.get(key)!r} now "
            "(the configs under conf/ changed, or it was started from another folder)"
        )
    return state


def open_loggers(cfg: DictConfig, run_dir: Path, stage: str):
    """The run's trackers (rank 0 only): an MLflow experiment per stage, or per sweep for its members
    (who share a W&B group too)."""
    from distill.engine import distributed as dist
    from distill.engine.loggers import Loggers

    names = [n for n in logger_names(cfg) if n != "csv"]
    if not names or not dist.is_main():
        return Loggers([])
    experiment, run_name, group = f"distill-{stage}", run_dir.name, None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            sweep = Path(HydraConfig.get().sweep.dir).resolve()  # a relative hydra.sweep.dir too
            group = f"{stage} sweep {sweep.parent.name}/{sweep.name}"
            experiment, run_name = f"distill-{group}", f"job {run_dir.name}"
    except ImportError:
        pass
    settings = OmegaConf.to_container(cfg.logger, resolve=True)
    loggers = Loggers.build(names, settings, run_dir, Path(str(cfg.paths.root)), experiment, run_name, group)
    loggers.start(plain_config(cfg))
    return loggers


def teacher_for_comparison(path: str | None) -> tuple[Any, str] | None:
    """The teacher a run learned from, to compare with in eval/export: a distill weights file or an
    ONNX file (run in onnxruntime); None for precomputed logits or a file that is gone."""
    if not path or not Path(path).is_file():
        return None
    if Path(path).suffix == ".onnx":
        from distill.models.onnx_teacher import OnnxTeacher

        return OnnxTeacher(path), "onnx"
    from distill.engine.checkpoint import load_model

    try:
        model, spec, _, _ = load_model(path)
    except UserError:  # precomputed logits: nothing to run on test images
        return None
    return model, spec.name
