"""What every stage does first: validate the config once, then set up seeds, threads and data.

Parts below ``distill/`` take typed arguments; this is the one place that reads the Hydra config.
"""

from __future__ import annotations

import contextvars
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from distill import config_dir
from distill.data.augment import AUGMENTS, MIXES
from distill.data.base import Splits
from distill.engine.fit import TrainerSettings
from distill.engine.runs import RESUME_FREE, RunDir
from distill.engine.teacher_backend import BACKENDS
from distill.errors import Diverged, UserError, closest
from distill.io import atomic_write
from distill.losses.base import Method
from distill.losses.kd import LOSS_KINDS
from distill.models.registry import TIMM_PREFIX, available_models
from distill.models.spec import ModelSpec

log = logging.getLogger("distill")

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
DEVICES = ("auto", "cpu", "cuda")


def _num(
    cfg: DictConfig,
    key: str,
    errors: list[str],
    lo: float | None = None,
    hi: float | None = None,
    integer: bool = False,
    lo_open: bool = False,
) -> None:
    """Checks that ``key`` is a number in range, appending a readable problem to ``errors``."""
    value = OmegaConf.select(cfg, key)
    kind = "a whole number" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        errors.append(f"{key} must be {kind}, got {value!r}")
        return
    if lo is not None and (value <= lo if lo_open else value < lo):
        errors.append(f"{key} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        errors.append(f"{key} must be <= {hi}, got {value}")


def _choice(cfg: DictConfig, key: str, choices: tuple[str, ...] | list[str], errors: list[str]) -> None:
    value = OmegaConf.select(cfg, key)
    if str(value) not in choices:
        errors.append(f"{key}={value!r} is not one of {', '.join(choices)}{closest(str(value), choices)}")


def missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Required values (``???``) left unset, as dotted keys."""
    found = []
    for key in cfg.keys() if isinstance(cfg, DictConfig) else []:
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            found.append(full)
        elif isinstance(cfg._get_node(key), DictConfig) and key != "hydra":
            found.extend(missing_keys(cfg._get_node(key), full + "."))
    return found


def _check_optim_sched(cfg: DictConfig, errors: list[str]) -> None:
    """Builds the optimizer and scheduler on one dummy parameter: torch's own checks of momentum,
    betas, weight decay, step sizes, ... report a bad value before any run starts."""
    if cfg.sched.get("warmup_epochs") is not None:
        _num(cfg, "sched.warmup_epochs", errors, lo=0, integer=True)
        if errors:
            return
    try:
        optimizer = instantiate(cfg.optim)(params=[torch.zeros(1, requires_grad=True)])
    except Exception as e:  # noqa: BLE001 - torch's ValueError/TypeError, or a bad _target_
        errors.append(f"optim: {_first_line(e)}")
        return
    try:
        instantiate(cfg.sched)(optimizer=optimizer)
    except Exception as e:  # noqa: BLE001
        errors.append(f"sched: {_first_line(e)}")


def _first_line(e: Exception) -> str:
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    return text[:300]


def _check_writable(path: str, key: str, errors: list[str]) -> None:
    """The nearest existing folder of ``path`` must be writable (runs are written under it)."""
    import os

    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and (not p.is_dir() or not os.access(p, os.W_OK)):
        errors.append(f"{key}={path}: {p} is not a writable folder")


def logger_names(cfg: DictConfig) -> list[str]:
    node = cfg.get("logger")
    return [str(k) for k in node.keys()] if node is not None else []


def open_loggers(cfg: DictConfig, run_dir: Path, stage: str):
    """The run's trackers (rank 0 only): an MLflow experiment per stage, or per sweep for its members."""
    from distill.engine import dist
    from distill.engine.loggers import Loggers

    names = [n for n in logger_names(cfg) if n != "csv"]
    if not names or not dist.is_main():
        return Loggers([])
    experiment, run_name = f"distill-{stage}", run_dir.name
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            sweep = Path(HydraConfig.get().sweep.dir)
            experiment, run_name = f"distill-{stage} sweep {sweep.parent.name}/{sweep.name}", f"job {run_dir.name}"
    except ImportError:
        pass
    settings = OmegaConf.to_container(cfg.logger, resolve=True)
    loggers = Loggers.build(names, settings, run_dir, Path(str(cfg.paths.root)), experiment, run_name)
    loggers.start(plain_config(cfg))
    return loggers


def check_training(cfg: DictConfig, errors: list[str], model_keys: tuple[str, ...]) -> None:
    """Validation shared by ``teacher`` and ``train``: trainer, optimizer, dataset, model names."""
    _num(cfg, "seed", errors, lo=0, integer=True)
    _num(cfg, "trainer.epochs", errors, lo=1, integer=True)
    _num(cfg, "trainer.batch_size", errors, lo=1, integer=True)
    _num(cfg, "trainer.eval_batch_size", errors, lo=1, integer=True)
    _num(cfg, "trainer.num_workers", errors, lo=0, integer=True)
    _num(cfg, "trainer.bn_recalibrate_batches", errors, lo=1, integer=True)
    if cfg.trainer.get("save_every_steps") is not None:
        _num(cfg, "trainer.save_every_steps", errors, lo=0, integer=True)
    _choice(cfg, "trainer.device", DEVICES, errors)
    _choice(cfg, "trainer.precision", PRECISIONS, errors)
    if cfg.trainer.get("teacher_precision") is not None:
        _choice(cfg, "trainer.teacher_precision", ("auto", *PRECISIONS), errors)
    if cfg.trainer.get("teacher_backend") is not None:
        _choice(cfg, "trainer.teacher_backend", BACKENDS, errors)
        precision = cfg.trainer.get("teacher_precision")
        if cfg.trainer.teacher_backend == "onnxruntime" and str(precision) not in ("None", "auto", "32"):
            errors.append(
                f"trainer.teacher_backend=onnxruntime runs the teacher in float32, but trainer.teacher_precision="
                f"{precision}; drop one of them (teacher_backend=torch keeps {precision})"
            )
    _choice(cfg, "trainer.progress", ("auto", "on", "off"), errors)
    if cfg.trainer.device == "cuda" and not torch.cuda.is_available():
        errors.append("trainer.device=cuda but no CUDA device is available; use trainer.device=auto or cpu")
    if cfg.trainer.precision == "16-mixed" and (cfg.trainer.device == "cpu" or not torch.cuda.is_available()):
        errors.append("trainer.precision=16-mixed needs a CUDA device; on CPUs use bf16-mixed or 32")
    if cfg.trainer.threads is not None:
        _num(cfg, "trainer.threads", errors, lo=1, integer=True)
    _num(cfg, "optim.lr", errors, lo=0, lo_open=True)
    if not errors:
        _check_optim_sched(cfg, errors)
    _check_writable(str(cfg.paths.root), "paths.root", errors)
    from distill.engine.loggers import check_available

    errors.extend(check_available(logger_names(cfg)))
    _choice(cfg, "dataset.augment", AUGMENTS, errors)
    for key in ("compile", "channels_last", "bn_recalibrate"):
        if key in cfg.trainer and not isinstance(cfg.trainer[key], bool):
            errors.append(f"trainer.{key} must be true or false, got {cfg.trainer[key]!r}")
    if cfg.trainer.get("mix") is not None:
        _choice(cfg, "trainer.mix", MIXES, errors)
        _num(cfg, "trainer.mix_alpha", errors, lo=0, lo_open=True)
    if "val_fraction" in cfg.dataset:
        _num(cfg, "dataset.val_fraction", errors, lo=0, hi=0.9, lo_open=True)
    models = available_models()
    for key in model_keys:
        name = OmegaConf.select(cfg, f"{key}.name")
        if OmegaConf.select(cfg, f"{key}.source") == "timm":
            check_path(OmegaConf.select(cfg, f"{key}.weights"), f"{key}.weights", errors, folder_ok=False)
            continue  # timm names are checked when the model is built
        if name not in models:
            errors.append(
                f"{key}.name={name!r} is not a known model{closest(str(name), models)}; "
                f"pick {key}=<torchvision name> or one of the conf/{key}/ files"
            )


def check_distill(cfg: DictConfig, errors: list[str]) -> None:
    _num(cfg, "distill.temperature", errors, lo=0, lo_open=True)
    _num(cfg, "distill.alpha", errors, lo=0, hi=1)
    _choice(cfg, "distill.loss", LOSS_KINDS, errors)
    d = cfg.distill
    if d.get("beta") is not None:
        _num(cfg, "distill.beta", errors, lo=0)
    if d.get("label_smoothing") is not None:
        _num(cfg, "distill.label_smoothing", errors, lo=0, hi=0.99)
    if d.get("temperature_end") is not None:
        _num(cfg, "distill.temperature_end", errors, lo=0, lo_open=True)
    for key in ("student_layers", "teacher_layers"):
        value = plain_value(d.get(key))
        if (
            value is not None
            and not isinstance(value, str)
            and not (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f"distill.{key} must be auto, head or a list of layer names, got {value!r}")
    method = d.get("method")
    if method is not None:
        target = method.get("_target_") if OmegaConf.is_dict(method) else None
        try:
            cls = get_class(str(target))
        except Exception:  # noqa: BLE001 - hydra raises several kinds; all mean the same to the user
            cls = None
        if cls is None or not (isinstance(cls, type) and issubclass(cls, Method)):
            methods = (Path(config_dir()) / "distill").glob("*.yaml")
            known = sorted(p.stem for p in methods if not p.stem.startswith("_"))  # _base: not a method
            errors.append(
                f"distill.method._target_={target!r} is not a distillation method; pick distill=NAME, "
                f"one of: {', '.join(known)}"
            )


def check_path(value: Any, key: str, errors: list[str], folder_ok: bool = True) -> None:
    """``key`` must name an existing path (a file, when ``folder_ok`` is False)."""
    if value is None:
        return
    if not Path(str(value)).exists():
        errors.append(f"{key}={value} does not exist")
    elif not folder_ok and Path(str(value)).is_dir():
        errors.append(f"{key}={value} is a folder; give the file itself")


def raise_if(errors: list[str]) -> None:
    if errors:
        raise UserError("; ".join(errors))


def setup(cfg: DictConfig) -> tuple[TrainerSettings, torch.device]:
    """Seeds every generator, sets threads, picks the device."""
    settings = TrainerSettings(**OmegaConf.to_container(cfg.trainer, resolve=True))
    seed = int(cfg.seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    from distill.engine import dist

    return settings, dist.device_for(settings.torch_device())


def load_data(cfg: DictConfig) -> Splits:
    """Instantiates the dataset node of the user's own config (``_target_`` is a loader in
    ``distill.data``, or one of theirs through ``--config-dir``); a UserError the loader raises stays
    one line instead of Hydra's "Error in call to target ..." wrapping."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg.dataset, _convert_="all")
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, UserError) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise


def plain_value(value: Any) -> Any:
    """A config node as plain Python containers (other values as they are)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def model_name(node: DictConfig) -> str:
    """The registry name of a model node: ``name``, or ``timm/<name>`` for ``source: timm``."""
    return f"{TIMM_PREFIX}{node.name}" if node.get("source") == "timm" else str(node.name)


def model_spec(node: DictConfig, data: Splits) -> ModelSpec:
    return ModelSpec(
        name=model_name(node),
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=list(data.image_size),
        mean=list(data.mean),
        std=list(data.std),
        classes=list(data.classes),
        kwargs=plain_value(node.get("kwargs")) or {},
    )


def model_key(node: DictConfig) -> dict[str, Any]:
    """What identifies a trained model's recipe: architecture, its arguments and its initial weights."""
    return {"name": model_name(node), "kwargs": plain_value(node.get("kwargs")) or {}, "weights": node.get("weights")}


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
    from distill.engine.fit import check_state

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


# The overrides of a run started through distill.api.run (on the command line, Hydra keeps them).
API_OVERRIDES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar("api_overrides", default=None)


def given_overrides() -> list[str]:
    """The overrides the user gave for this run: those given to ``distill.api.run``, or Hydra's record
    of the command line."""
    if API_OVERRIDES.get() is not None:
        return list(API_OVERRIDES.get())
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError):
        pass
    return []


def compose_stage(name: str, overrides: list[str]) -> DictConfig:
    """Composes another stage's primary config, inside a running Hydra app or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from distill import config_dir

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=name, overrides=overrides)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def hydra_entry(stage: str, run_fn: Any, metric: str | None = None) -> Any:
    """The few-line ``@hydra.main`` wrapper of a stage: user errors become one line and exit code 2.

    Returns ``summary[metric]`` so that Hydra sweepers (e.g. Optuna) can optimise it.
    """
    import sys

    import hydra

    from distill import config_dir

    @hydra.main(config_path=config_dir(), config_name=stage, version_base="1.3")
    def main(cfg: DictConfig) -> Any:
        from distill.engine.fit import Interrupted

        try:
            summary = run_fn(cfg)
        except Diverged as e:
            from hydra.core.hydra_config import HydraConfig
            from hydra.types import RunMode

            if HydraConfig.get().mode != RunMode.MULTIRUN:
                print(f"distill {stage}: error: {e}", file=sys.stderr)
                sys.exit(2)
            print(f"distill {stage}: error: {e}; this member of the sweep failed, the sweep goes on", file=sys.stderr)
            if "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower():
                raise RuntimeError(str(e)) from None  # Optuna records a failed trial (max_failure_rate)
            return float("nan") if metric else None
        except UserError as e:
            _mark_failed(cfg, e)
            print(f"distill {stage}: error: {e}", file=sys.stderr)
            sys.exit(2)
        except Interrupted as e:
            import yaml

            try:  # the run that stopped may be a step of another stage (chain): resume that run
                ran = (yaml.safe_load(RunDir(e.run_dir).config.read_text()) or {}).get("stage", stage)
            except (OSError, yaml.YAMLError):
                ran = stage
            if (e.run_dir / ".hydra" / "overrides.yaml").is_file():
                how = f"Continue with: distill {ran} resume={e.run_dir}"
            elif (stage, ran) == ("train", "teacher"):  # the teacher train trains for itself
                how = "Run the same command again: it continues this teacher run, then trains the student."
            else:
                how = "It was started inside another stage (a chain step) and is not resumable on its own."
            print(f"distill {stage}: stopped by {e} after a finished step; the state is saved. {how}", file=sys.stderr)
            sys.exit(e.exit_code)
        return summary.get(metric) if metric and isinstance(summary, dict) else None

    return main


def _mark_failed(cfg: DictConfig, error: Exception) -> None:
    """A run that stops on an error after its folder was made keeps its log and says it failed
    (``failed.json``), so nobody takes it for a finished run; never raises (the disk may be full)."""
    import json
    import time

    folder = OmegaConf.select(cfg, "paths.output_dir", default=None)
    if not folder or not Path(str(folder)).is_dir() or RunDir(str(folder)).finished:
        return
    try:
        info = {"status": "failed", "error": str(error), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write(RunDir(str(folder)).failed, json.dumps(info, indent=2))
    except (OSError, UserError):
        pass


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
