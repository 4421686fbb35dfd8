"""The training run shared by the ``teacher`` and ``train`` stages: epochs, validation, checkpoints."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distill.data.base import Splits
from distill.engine.batches import BatchLoader
from distill.engine.checkpoint import ModelSpec, save_state, save_weights
from distill.engine.loop import Teachers, predict, recalibrate_bn, train_one_epoch
from distill.engine.metrics import topk_accuracy
from distill.engine.progress import EpochProgress
from distill.engine.taps import Taps

log = logging.getLogger("distill")


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix maths natively (so bf16 inference is faster, not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


@dataclass
class TrainerSettings:
    """How to train; mirrors the ``trainer`` config group (see ``conf/trainer/default.yaml``)."""

    epochs: int = 20
    batch_size: int = 64
    device: str = "auto"
    precision: str = "32"
    teacher_precision: str = "auto"
    num_workers: int = 0
    channels_last: bool = True
    bn_recalibrate: bool = True
    bn_recalibrate_batches: int = 10
    eval_batch_size: int = 512
    threads: int | None = None
    progress: str = "auto"
    mix: str = "none"
    compile: bool = False
    mix_alpha: float = 1.0

    def teacher_autocast(self) -> str:
        """The teacher's inference precision: ``auto`` is bf16 where the hardware computes it natively
        (CPUs with AVX512-BF16 or AMX, CUDA GPUs with bf16), else the student's precision."""
        if self.teacher_precision != "auto":
            return self.teacher_precision
        return "bf16-mixed" if fast_bf16(self.torch_device()) else self.precision

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass
class FitResult:
    best_epoch: int
    best_val_acc: float
    last_test_acc: float
    train_images_per_s: float
    train_seconds: float
    bn_recalibrated_images: int


def fit(
    model: nn.Module,
    loss_fn: Callable,
    data: Splits,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: TrainerSettings,
    run_dir: Path,
    spec: ModelSpec,
    config: dict,
    seed: int,
    teachers: Teachers | None = None,
    student_taps: Taps | None = None,
    with_index: bool = False,
    view_fn: Callable[[int], torch.Tensor] | None = None,
) -> FitResult:
    """Trains ``model``, keeping ``checkpoints/best.safetensors`` (by validation accuracy) and ``last``.

    Each epoch appends a line to ``metrics.jsonl``. When done, ``model`` holds the *last* weights
    (the caller loads ``best`` for the test figure); ``last_test_acc`` is measured here.
    """
    device = settings.torch_device()
    # torch.compile for the training steps only; the eager module (same parameters) is saved,
    # evaluated and exported. Feature taps are forward hooks, which compiled graphs may skip.
    step_model = model
    if settings.compile and student_taps is None:
        step_model = torch.compile(model)
    elif settings.compile:
        log.warning("trainer.compile is off for this run: the method reads student layers through hooks")
    cl = settings.channels_last
    loader = BatchLoader(
        data.train_x,
        data.train_y,
        settings.batch_size,
        augment=data.augment,
        seed=seed,
        device=device,
        num_workers=settings.num_workers,
        channels_last=cl,
        with_index=with_index,
        view_fn=view_fn,
    )
    calib = BatchLoader(
        data.train_x, data.train_y, settings.batch_size, shuffle=True, seed=seed + 1, device=device, channels_last=cl
    )
    # fp16 needs loss scaling against gradient underflow; bf16 has fp32's range and does not.
    scaler = torch.amp.GradScaler("cuda") if settings.precision == "16-mixed" and device.type == "cuda" else None
    ckpt = run_dir / "checkpoints"
    best_acc, best_epoch, images, seconds, calibrated = -1.0, -1, 0, 0.0, 0
    with EpochProgress(settings.epochs, len(loader), settings.progress) as bar:
        for epoch in range(settings.epochs):
            loader.set_epoch(epoch)
            t0 = time.perf_counter()

            def on_step(step: int, loss: float, acc: float, n: int, epoch: int = epoch, t0: float = t0) -> None:
                bar.step(epoch, loss, acc, (step * settings.batch_size + n) / (time.perf_counter() - t0))

            stats = train_one_epoch(
                step_model,
                loss_fn,
                loader,
                optimizer,
                teachers=teachers,
                student_taps=student_taps,
                precision=settings.precision,
                scaler=scaler,
                on_step=on_step,
                mix=(settings.mix, settings.mix_alpha, data.num_classes) if settings.mix != "none" else None,
                epoch=epoch,
            )
            scheduler.step()
            images, seconds = images + stats.images, seconds + stats.seconds
            if settings.bn_recalibrate:
                calib.set_epoch(epoch)
                calibrated = recalibrate_bn(model, calib, settings.bn_recalibrate_batches)
            val_logits = predict(model, data.val_x, settings.eval_batch_size, device, channels_last=cl)
            val_acc = topk_accuracy(val_logits, data.val_y)
            row = {
                "epoch": epoch + 1,
                "train_loss": round(stats.loss, 6),
                "train_acc": round(stats.acc, 6),
                **{f"train_{k}": round(v, 6) for k, v in stats.parts.items()},
                "val_acc": round(val_acc, 6),
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": round(stats.images_per_s, 1),
                "epoch_s": round(stats.seconds, 3),
            }
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            save_weights(ckpt / "last.safetensors", model, spec, config)
            if val_acc > best_acc:
                best_acc, best_epoch = val_acc, epoch + 1
                save_weights(ckpt / "best.safetensors", model, spec, config)
            save_state(
                ckpt / "state.pt",
                {
                    "epoch": epoch + 1,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "best_val_acc": best_acc,
                    "best_epoch": best_epoch,
                    "seed": seed,
                },
            )
            log.info(
                "epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f  %.0f img/s",
                epoch + 1,
                settings.epochs,
                stats.loss,
                stats.acc,
                val_acc,
                stats.images_per_s,
            )
    last_test = topk_accuracy(
        predict(model, data.test_x, settings.eval_batch_size, device, channels_last=cl), data.test_y
    )
    return FitResult(best_epoch, best_acc, last_test, images / max(seconds, 1e-9), seconds, calibrated)
