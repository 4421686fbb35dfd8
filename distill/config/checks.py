"""Checks of a composed config: each appends its problems to a list, and :func:`raise_if` reports them
all in one line, before anything runs or any folder is made."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from distill import config_dir
from distill.choices import LOSS_KINDS, check_choice, check_number, check_values  # check_number: also from here
from distill.errors import UserError, closest, first_line
from distill.losses.base import Method
from distill.models.lr import AUTO, auto_lr
from distill.models.registry import available_models


def resolve_lr(optim: Any, model: Mapping[str, Any] | None, batch_size: int) -> tuple[Any, str | None]:
    """``optim`` (the config node) with an ``auto`` lr replaced by :func:`auto_lr`'s rate for ``model``,
    and how the rate was found (None when lr was given as a number)."""
    if str(optim.get("lr")) != AUTO:
        return optim, None
    if not str(optim.get("_target_", "")).endswith(".SGD"):
        raise ValueError(f"lr=auto is measured for SGD only; give {optim.get('_target_')} a number (optim.lr=0.001)")
    lr, how = auto_lr(model or {}, batch_size)
    resolved = OmegaConf.create(OmegaConf.to_container(optim, resolve=True))
    resolved.lr = lr
    return resolved, how


def _check_optim_sched(cfg: DictConfig, errors: list[str], model_key: str) -> None:
    """Builds the optimizer and scheduler on one dummy parameter: torch's own checks of momentum,
    betas, weight decay, step sizes, ... report a bad value before any run starts."""
    if cfg.sched.get("warmup_epochs") is not None:
        check_number(cfg, "sched.warmup_epochs", errors, lo=0, integer=True)
        if errors:
            return
    try:
        optim, _ = resolve_lr(cfg.optim, cfg.get(model_key), int(cfg.trainer.batch_size))
        optimizer = instantiate(optim)(params=[torch.zeros(1, requires_grad=True)])
    except Exception as e:  # noqa: BLE001 - torch's ValueError/TypeError, or a bad _target_
        errors.append(f"optim: {first_line(e, 300)}")
        return
    try:
        instantiate(cfg.sched)(optimizer=optimizer)
    except Exception as e:  # noqa: BLE001
        errors.append(f"sched: {first_line(e, 300)}")


def _check_writable(path: str, key: str, errors: list[str]) -> None:
    """The nearest existing folder of ``path`` must be writable (runs are written under it)."""
    import os

    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if p.exists() and (not p.is_dir() or not os.access(p, os.W_OK)):
        errors.append(f"{key}={path}: {p} is not a writable folder")


def check_training(cfg: DictConfig, errors: list[str], model_keys: tuple[str, ...], min_epochs: int = 1) -> None:
    """Validation shared by ``teacher`` and ``train``: trainer, optimizer, dataset, model names."""
    errors.extend(check_values(cfg))  # the choices and number ranges of distill/choices.py
    if not any(e.startswith("trainer.epochs") for e in errors):
        check_number(cfg, "trainer.epochs", errors, lo=min_epochs, integer=True)
    if cfg.trainer.get("teacher_backend") is not None:
        precision = cfg.trainer.get("teacher_precision")
        if cfg.trainer.teacher_backend == "onnxruntime" and str(precision) not in ("None", "auto", "32"):
            errors.append(
                f"trainer.teacher_backend=onnxruntime runs the teacher in float32, but trainer.teacher_precision="
                f"{precision}; drop one of them (teacher_backend=torch keeps {precision})"
            )
    if cfg.trainer.device == "cuda" and not torch.cuda.is_available():
        errors.append("trainer.device=cuda but no CUDA device is available; use trainer.device=auto or cpu")
    if cfg.trainer.precision == "16-mixed" and (cfg.trainer.device == "cpu" or not torch.cuda.is_available()):
        errors.append("trainer.precision=16-mixed needs a CUDA device; on CPUs use bf16-mixed or 32")
    if str(cfg.optim.get("lr")) != AUTO:
        check_number(cfg, "optim.lr", errors, lo=0, lo_open=True)
    if not errors:
        _check_optim_sched(cfg, errors, model_keys[0])
    _check_writable(str(cfg.paths.root), "paths.root", errors)
    from distill.engine.loggers import check_available

    errors.extend(check_available(logger_names(cfg)))
    for key in ("compile", "channels_last", "bn_recalibrate"):
        if key in cfg.trainer and not isinstance(cfg.trainer[key], bool):
            errors.append(f"trainer.{key} must be true or false, got {cfg.trainer[key]!r}")
    models = available_models()
    for key in model_keys:
        name = OmegaConf.select(cfg, f"{key}.name")
        if OmegaConf.select(cfg, f"{key}._target_") is not None:
            errors.extend(target_problems(cfg[key], key))
            continue
        if OmegaConf.select(cfg, f"{key}.source") == "hf":
            errors.extend(hf_problems(cfg[key], key))
            continue
        if OmegaConf.select(cfg, f"{key}.source") == "timm":
            check_path(OmegaConf.select(cfg, f"{key}.weights"), f"{key}.weights", errors, folder_ok=False)
            continue  # timm names are checked when the model is built
        if name not in models:
            errors.append(
                f"{key}.name={name!r} is not a known model{closest(str(name), models)}; "
                f"pick {key}=<torchvision name> or one of the conf/{key}/ files"
            )


def hf_problems(node: DictConfig, role: str) -> list[str]:
    """A Hugging Face model node: the extra installed and ``weights`` pretrained or null (its name is
    read, with its config, when the model is built)."""
    import importlib.util

    problems = []
    if importlib.util.find_spec("transformers") is None:
        problems.append(f"{role}=hf needs the optional extra: pip install 'distill[hf]'")
    else:  # its config, read now (a folder, or the hub cache): a missing model is refused before any run
        from distill.models.hf_models import pretrained_labels

        try:
            pretrained_labels(str(node.name))
        except UserError as e:
            problems.append(f"{role}: {e}")
    if node.get("weights") not in (None, "pretrained"):
        problems.append(f"{role}.weights must be pretrained or null for a Hugging Face model, got {node.weights!r}")
    return problems


def target_problems(node: DictConfig, role: str) -> list[str]:
    """What is wrong with a model node's ``_target_`` (the user's own network): a dotted path that
    imports to a callable taking the node's kwargs. The user named it, so it is imported here."""
    from distill.models.user import call_arguments, is_target, resolve

    target = str(node._target_)
    if not is_target(target):
        return [f"{role}._target_={target!r} must be the dotted path of a callable, e.g. mypkg.models.make_net"]
    kwargs = plain_value(node.get("kwargs")) or {}
    try:
        call_arguments(resolve(target), target, {}, kwargs)  # refuses kwargs it does not take or the dataset gives
    except UserError as e:
        if " takes no argument " not in str(e) or node.get("name") in (None, "custom"):
            return [f"{role}._target_: {e}"]
        # the kwargs came with the shipped model the target replaces
        start = f"{role}=custom {role}._target_={target}"
        return [f"{e} (the kwargs of {role}={node.name}); start from {role}=custom: {start}"]
    return []


def check_distill(cfg: DictConfig, errors: list[str]) -> None:
    check_number(cfg, "distill.temperature", errors, lo=0, lo_open=True)
    check_number(cfg, "distill.alpha", errors, lo=0, hi=1)
    check_choice(cfg, "distill.loss", LOSS_KINDS, errors)
    d = cfg.distill
    if d.get("beta") is not None:
        check_number(cfg, "distill.beta", errors, lo=0)
    if d.get("label_smoothing") is not None:
        check_number(cfg, "distill.label_smoothing", errors, lo=0, hi=0.99)
    if d.get("temperature_end") is not None:
        check_number(cfg, "distill.temperature_end", errors, lo=0, lo_open=True)
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
            known = sorted(p.stem for p in (Path(config_dir()) / "distill").glob("*.yaml"))
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


def plain_value(value: Any) -> Any:
    """A config node as plain Python containers (other values as they are)."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def logger_names(cfg: DictConfig) -> list[str]:
    node = cfg.get("logger")
    return [str(k) for k in node.keys()] if node is not None else []
