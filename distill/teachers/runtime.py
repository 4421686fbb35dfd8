"""Where a frozen teacher runs at every step: PyTorch (float32 or bf16) or onnxruntime."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.data.base import Splits
from distill.engine import distributed as dist
from distill.engine.cache import file_digest
from distill.engine.checkpoint import weights_path
from distill.engine.loop import Teachers
from distill.engine.settings import TrainerSettings, fast_bf16
from distill.engine.teacher_backend import faster_teacher_runtime, onnxruntime_teacher
from distill.teachers.plan import TeacherPlan, TeacherSetup

log = logging.getLogger("distill")


def why_not_onnxruntime(plan: TeacherPlan, models: list[Any], device: torch.device) -> str | None:
    """Why these teachers cannot run in onnxruntime (None when they can)."""
    if device.type != "cpu":
        return f"the device is {device.type}"
    if plan.reads_layers:
        return "the method reads the teacher's layers"
    if dist.world_size() > 1:
        return "under torchrun"
    if not all(isinstance(m, nn.Module) and any(True for _ in m.parameters()) for m in models):
        return "the teacher is a black box already"
    return None


def teacher_backend(got: TeacherSetup, plan: TeacherPlan, data: Splits, device: torch.device) -> tuple[Teachers, str]:
    """The frozen teachers in onnxruntime where ``trainer.teacher_backend`` asks for it (``auto``:
    on CPUs, in float32, when no teacher layer is read), else as they are."""
    teachers, teacher_path, settings = got.teachers, got.path, got.settings
    want = settings.teacher_backend
    if want == "torch":
        return teachers, "torch"
    why_not = why_not_onnxruntime(plan, teachers.models, device)
    if why_not is None and settings.teacher_autocast() != "32":
        why_not = f"the teacher runs in {settings.teacher_autocast()}"
    if why_not:
        (log.warning if want == "onnxruntime" else log.info)("teacher stays in PyTorch: %s", why_not)
        return teachers, "torch"
    paths = [teacher_path, *(weights_path(p) for p in plan.extra)]
    images = data.train_x[: min(64, len(data.train_x))].float().div(255)
    converted = [
        onnxruntime_teacher(m, file_digest(p), plan.cache.dir, images, settings.threads)
        for m, p in zip(teachers.models, paths)
    ]
    if any(c is None for c in converted):
        return teachers, "torch"
    return Teachers(converted, precision=teachers.precision), "onnxruntime"


def settle_runtime(
    plan: TeacherPlan, teacher: nn.Module, teacher_path: Path, data: Splits, settings: TrainerSettings
) -> TrainerSettings:
    """With ``teacher_backend`` and ``teacher_precision`` both ``auto`` on a CPU with native bf16, the
    teacher runs where it is faster on this machine: PyTorch in bf16 or onnxruntime in float32,
    measured once per teacher and CPU and remembered under ``cache.dir``. Elsewhere the settings
    stay as they are (without native bf16, float32 in onnxruntime wins; on a GPU, bf16 in PyTorch)."""
    device = settings.torch_device()
    if (settings.teacher_backend, settings.teacher_precision) != ("auto", "auto") or not fast_bf16(device):
        return settings
    if plan.extra or device.type != "cpu" or why_not_onnxruntime(plan, [teacher], device) is not None:
        return settings
    images = data.train_x[: min(64, settings.eval_batch_size, len(data.train_x))].float().div(255)
    choice, speeds = faster_teacher_runtime(
        teacher, file_digest(teacher_path), plan.cache.dir, images, settings.threads, settings.channels_last
    )
    log.info(
        "teacher runtime on this CPU: %s (PyTorch bf16 %s img/s, onnxruntime float32 %s img/s; %s %s)",
        "onnxruntime float32" if choice == "onnxruntime" else "PyTorch bf16",
        speeds.get("bf16_images_per_s"),
        speeds.get("onnxruntime_images_per_s", "n/a"),
        "measured now, kept in" if speeds["measured_now"] else "as measured before, in",
        speeds["record"],
    )
    if choice == "onnxruntime":
        return replace(settings, teacher_backend="onnxruntime", teacher_precision="32")
    return replace(settings, teacher_backend="torch", teacher_precision="bf16-mixed")
