"""The part of a training stage that ``teacher`` and ``train`` share: build, fit, test, describe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from distill.config.adapters import model_spec, plain_config
from distill.config.checks import plain_value
from distill.data.base import Splits
from distill.engine.checkpoint import read_weights
from distill.engine.fit import FitResult, TrainerSettings, fit
from distill.engine.loop import Teachers, predict
from distill.engine.metrics import speed, topk_accuracy
from distill.engine.runs import RunDir
from distill.engine.taps import attach_taps
from distill.models.registry import count_params
from distill.models.spec import ModelSpec, build_from_spec, load_state_into

log = logging.getLogger("distill")


def describe(
    model: nn.Module,
    weights_path: Path | None,
    data: Splits,
    settings: TrainerSettings,
    device: torch.device,
    logits: torch.Tensor | None = None,
    params: int | None = None,
) -> dict[str, Any]:
    """Test accuracy, parameters, size on disk, latency per image and inference throughput.
    ``params``: the parameter count, for a model that does not hold its own (an onnxruntime teacher)."""
    if logits is None:
        logits = predict(model, data.test_x, settings.eval_batch_size, device, channels_last=settings.channels_last)
    example = data.test_x[:1].to(device).float().div(255)
    return {
        "test_acc": round(topk_accuracy(logits, data.test_y), 6),
        "params": count_params(model) if params is None else params,
        "size_bytes": weights_path.stat().st_size if weights_path else None,
        **speed(model.eval(), example),
    }


def train_model(
    cfg: DictConfig,
    node: DictConfig,
    data: Splits,
    loss_fn: nn.Module,
    settings: TrainerSettings,
    device: torch.device,
    run_dir: Path,
    teachers: Teachers | None = None,
    view_fn: Callable[[int], torch.Tensor] | None = None,
    resume: dict | None = None,
    extra_state: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[nn.Module, ModelSpec, FitResult, Path]:
    """Builds the model of ``node``, trains it, and returns it holding its best (by validation) weights.

    When ``loss_fn`` carries a method that reads layers (``distill.student_layers`` /
    ``teacher_layers``), they are hooked and its connectors built on two training images first;
    the connectors train with the model (one optimizer) and are not saved with it. ``resume``: the
    saved state of this run to continue from; ``extra_state`` is saved with every state.
    """
    spec = model_spec(node, data)
    model = build_from_spec(spec, weights=node.get("weights"))
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    s_taps, method = None, getattr(loss_fn, "method", None)
    if method is not None and loss_fn.beta > 0:
        example = data.train_x[:2].to(device).float().div(255)
        if settings.channels_last:
            example = example.contiguous(memory_format=torch.channels_last)
        teacher_net = teachers.models[0] if teachers is not None else None
        s_taps, t_taps, lines = attach_taps(
            model,
            teacher_net if isinstance(teacher_net, nn.Module) else None,
            method,
            plain_value(cfg.distill.get("student_layers")),
            plain_value(cfg.distill.get("teacher_layers")),
            example,
            data.num_classes,
            len(data.train_y),
        )
        if teachers is not None:
            teachers.taps = t_taps
        extra = sum(p.numel() for p in method.parameters())
        log.info(
            "%s reads %s; its connectors and heads: %s parameters (not exported)",
            type(method).__name__,
            "; ".join(lines) or "logits only",
            f"{extra:,}",
        )
    params = list(model.parameters()) + (list(loss_fn.parameters()) if isinstance(loss_fn, nn.Module) else [])
    if teachers is not None and teachers.online:  # peers trained in the same steps
        params += [p for m in teachers.models for p in m.parameters()]
    optimizer = instantiate(cfg.optim)(params=params)
    scheduler = instantiate(cfg.sched)(optimizer=optimizer)
    log.info(
        "training %s (%s parameters) on %s: %d train / %d val / %d test images, augment=%s, device %s",
        spec.name,
        f"{count_params(model):,}",
        data.name,
        len(data.train_y),
        len(data.val_y),
        len(data.test_y),
        data.augment,
        device,
    )
    try:
        result = fit(
            model,
            loss_fn,
            data,
            optimizer,
            scheduler,
            settings,
            run_dir,
            spec,
            plain_config(cfg),
            int(cfg.seed),
            teachers=teachers,
            student_taps=s_taps,
            with_index=bool(getattr(method, "needs_index", False)) or (teachers is not None and teachers.takes_index),
            view_fn=view_fn,
            resume=resume,
            extra_state=extra_state,
            on_epoch=on_epoch,
        )
    finally:  # hooks off the model and the teacher whatever happened
        for taps in (s_taps, teachers.taps if teachers is not None else None):
            if taps is not None:
                taps.close()
    if result.bn_recalibrated_images:
        log.info(
            "BatchNorm statistics were recomputed on %d training images before every evaluation "
            "(trainer.bn_recalibrate=false turns this off)",
            result.bn_recalibrated_images,
        )
    best = RunDir(run_dir).best
    tensors, _ = read_weights(best)
    load_state_into(model, tensors, best)
    return model, spec, result, best
