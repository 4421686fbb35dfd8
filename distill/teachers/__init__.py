"""Everything that turns a run's config into the teacher outputs its student learns from.

A :class:`~distill.teachers.plan.TeacherPlan` is read once from the config; from it
:func:`prepare` gets the teachers (a run folder or weights file, the automatic teacher trained or
reused, torchvision or timm weights, an ONNX or logits file, online peers) and :func:`serve` puts
them where training reads them fastest (the teacher cache, onnxruntime, PyTorch). The ``train``
stage knows nothing of where the outputs come from.

Modules: ``plan`` (the typed plan), ``frozen`` (weights files and black boxes), ``auto`` (the
teacher ``train`` trains for itself), ``supervised`` (the teacher recipe, which ``distill teacher``
runs too), ``runtime`` (PyTorch or onnxruntime, bf16 or float32), ``cached`` (the teacher cache),
``online`` (peers trained beside the student).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.config.adapters import sweep_scope
from distill.data.base import Splits
from distill.engine import distributed as dist
from distill.engine.checkpoint import weights_path
from distill.engine.loop import Teachers
from distill.engine.memo import forget
from distill.engine.settings import TrainerSettings
from distill.teachers.cached import teacher_cache
from distill.teachers.frozen import load_frozen, load_teacher
from distill.teachers.online import finish_peers, online_peers, peer_names
from distill.teachers.plan import TeacherPlan, TeacherSetup, teacher_plan
from distill.teachers.runtime import settle_runtime, teacher_backend

__all__ = ["TeacherPlan", "TeacherSetup", "finish_peers", "peer_names", "prepare", "serve", "teacher_plan"]


def prepare(
    plan: TeacherPlan, data: Splits, device: torch.device, settings: TrainerSettings, resumed: Path | None = None
) -> TeacherSetup:
    """The run's teachers, loaded (or trained first), frozen and checked against the data.
    ``resumed``: the weights a resumed run started with, used instead of resolving them again."""
    if plan.online:
        teachers = online_peers(plan, data, device, settings)
        return TeacherSetup(teachers, teachers.models[0], None, settings, _params(teachers.models[0]), name=plan.name)
    if not plan.needed:
        return TeacherSetup(None, None, None, settings)
    teacher, path = load_teacher(plan, data, device, settings, resumed)
    extra = [load_frozen(weights_path(p), data, device, settings)[0] for p in plan.extra]
    teachers = Teachers([teacher, *extra], precision=settings.teacher_autocast())
    name = getattr(teacher, "distill_name", plan.name)
    return TeacherSetup(teachers, teacher, path, settings, _params(teacher), name=name)


def serve(setup: TeacherSetup, plan: TeacherPlan, data: Splits, device: torch.device) -> TeacherSetup:
    """Frozen teachers read from the cache (built first when missing) or, when they cannot be
    cached, run at every step by the faster backend."""
    if setup.teachers is None or plan.online:
        return setup
    # under torchrun rank 0 builds the cache while the others wait, then they all read it
    if not dist.is_main():
        dist.barrier()
    cached, setup.view_fn, setup.cache = teacher_cache(setup, plan, data, device)
    if dist.is_main():
        dist.barrier()
    if cached is not None:
        setup.teachers = Teachers([cached])
        return setup
    # the teacher runs at every step: where it is faster on this machine (measured once per teacher and
    # CPU). Not before: a run the cache serves never pays for the measurement (an onnxruntime session
    # beside the PyTorch teacher: its peak memory) nor runs the teacher per step
    teacher = setup.teachers.models[0]
    if not getattr(teacher, "takes_index", False) and setup.path is not None:
        setup.settings = settle_runtime(plan, teacher, setup.path, data, setup.settings)
        setup.teachers.precision = setup.settings.teacher_autocast()
    setup.teachers, setup.backend = teacher_backend(setup, plan, data, device)
    if setup.backend == "onnxruntime":  # the PyTorch copy goes: its weights live in onnxruntime now
        setup.model = setup.teachers.models[0]
        forget(sweep_scope(), "teacher_model")  # nor does a sweep keep it for its next member
    return setup


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
