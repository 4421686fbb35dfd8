"""Training one model on a dataset, from its description to its best weights, and describing it:
what the ``teacher`` stage, the teacher ``train`` trains for itself and the ``train`` stage share.
Typed arguments only; the stages read them from the config (``distill.config.adapters``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.data.base import Splits
from distill.engine.checkpoint import read_weights
from distill.engine.fit import FitResult, fit
from distill.engine.loop import Teachers, eval_batch, predict
from distill.engine.memo import remembered
from distill.engine.metrics import speed, topk_accuracy
from distill.engine.runs import RunDir
from distill.engine.settings import TrainerSettings
from distill.engine.taps import attach_taps
from distill.models.registry import count_params
from distill.models.spec import ModelSpec, build_from_spec, load_state_into

log = logging.getLogger("distill")


@dataclass(frozen=True)
class Recipe:
    """How a model learns, besides the trainer settings: its optimizer and schedule, the seed, and the
    resolved config written into its weights files."""

    make_optimizer: Callable[..., torch.optim.Optimizer]  # called with params=
    make_scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler]  # called with optimizer=
    seed: int
    config: dict[str, Any]


def describe(
    model: nn.Module,
    weights_path: Path | None,
    data: Splits,
    settings: TrainerSettings,
    device: torch.device,
    logits: torch.Tensor | None = None,
    params: int | None = None,
    scope: Hashable | None = None,
    arch: Hashable | None = None,
) -> dict[str, Any]:
    """Test accuracy, parameters, size on disk, latency per image and inference throughput.
    ``params``: the parameter count, for a model that does not hold its own (an onnxruntime teacher).
    ``arch``: what the speed depends on (the architecture and its arguments), to measure it once per
    ``scope`` (a sweep: its members train the same architecture with other settings)."""
    if logits is None:
        cl, workers = settings.channels_last, settings.num_workers
        logits = predict(model, data.test_x, settings.eval_batch_size, device, channels_last=cl, num_workers=workers)
    example = data.test_x[:1].to(device).float().div(255)
    batch = eval_batch(64, data.test_x, device)
    key = ("speed", arch, tuple(example.shape), str(device), torch.get_num_threads(), settings.channels_last, batch)
    return {
        "test_acc": round(topk_accuracy(logits, data.test_y), 6),
        "params": count_params(model) if params is None else params,
        "size_bytes": weights_path.stat().st_size if weights_path else None,
        **remembered(scope if arch is not None else None, key, lambda: speed(model.eval(), example, batch_size=batch)),
    }


def run_figures(data: Splits, desc: dict[str, Any], result: FitResult, epochs: int, seed: int, best: Path) -> dict:
    """The summary keys every training stage writes: files skipped, the model's description, the
    fit's figures, the seed and the weights file."""
    return {
        "skipped_images": {"count": len(data.skipped), "first": data.skipped[:5]},
        **desc,
        "last_test_acc": round(result.last_test_acc, 6),
        "val_acc": round(result.best_val_acc, 6),
        "best_epoch": result.best_epoch,
        "epochs": epochs,
        "train_images_per_s": round(result.train_images_per_s, 1),
        "train_seconds": round(result.train_seconds, 2),
        "bn_recalibrated_images": result.bn_recalibrated_images,
        "seed": seed,
        "weights": str(best.resolve()),
    }


def train_supervised(
    spec: ModelSpec,
    data: Splits,
    loss_fn: nn.Module,
    settings: TrainerSettings,
    device: torch.device,
    run_dir: Path,
    recipe: Recipe,
    *,
    init_weights: str | None = None,
    layers: tuple[Any, Any] = (None, None),
    teachers: Teachers | None = None,
    view_fn: Callable[[int], torch.Tensor] | None = None,
    resume: dict | None = None,
    extra_state: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[nn.Module, FitResult, Path]:
    """Builds the model ``spec`` describes (from torchvision's ``init_weights`` when given), trains it,
    and returns it holding its best (by validation) weights, with the fit's figures and that file.

    When ``loss_fn`` carries a method that reads layers (``layers``: the student's and the
    teacher's, as ``distill.student_layers`` / ``teacher_layers``), they are hooked and its
    connectors built on two training images first; the connectors train with the model (one
    optimizer) and are not saved with it. ``resume``: the saved state of this run to continue
    from; ``extra_state`` is saved with every state.
    """
    model = build_from_spec(spec, weights=init_weights)
    model.to(device)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    s_taps, method = None, getattr(loss_fn, "method", None)
    if method is not None and loss_fn.beta > 0:
        s_taps = _attach_method(model, method, layers, teachers, data, settings, device)
    params = list(model.parameters()) + list(loss_fn.parameters())
    if teachers is not None and teachers.online:  # peers trained in the same steps
        params += [p for m in teachers.models for p in m.parameters()]
    optimizer = recipe.make_optimizer(params=params)
    scheduler = recipe.make_scheduler(optimizer=optimizer)
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
            recipe.config,
            recipe.seed,
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
    if result.kept_test_logits is None:  # an earlier epoch was kept: its weights, from the file
        tensors, _ = read_weights(best)
        load_state_into(model, tensors, best)
    return model, result, best


def _attach_method(
    model: nn.Module,
    method: nn.Module,
    layers: tuple[Any, Any],
    teachers: Teachers | None,
    data: Splits,
    settings: TrainerSettings,
    device: torch.device,
):
    """Hooks the layers the method reads and builds its connectors; returns the student's taps."""
    example = data.train_x[:2].to(device).float().div(255)
    if settings.channels_last:
        example = example.contiguous(memory_format=torch.channels_last)
    teacher_net = teachers.models[0] if teachers is not None else None
    s_taps, t_taps, lines = attach_taps(
        model,
        teacher_net if isinstance(teacher_net, nn.Module) else None,
        method,
        layers[0],
        layers[1],
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
    return s_taps
