"""Online distillation and deep mutual learning: peers trained from scratch beside the student."""

from __future__ import annotations

import logging

import torch

from distill.config.adapters import model_spec
from distill.data.base import Splits
from distill.engine.batches import BatchLoader
from distill.engine.loop import Teachers, recalibrate_bn
from distill.engine.settings import TrainerSettings
from distill.losses.mutual import peer_loss
from distill.models.spec import build_from_spec
from distill.teachers.plan import TeacherPlan

log = logging.getLogger("distill")


def peer_names(plan: TeacherPlan) -> list[str]:
    """``distill.peers``, else the teacher's model."""
    return plan.peers or [plan.name]


def online_peers(plan: TeacherPlan, data: Splits, device: torch.device, settings: TrainerSettings) -> Teachers:
    """Fresh networks trained alongside the student."""
    nodes = [{"name": n} for n in plan.peers] or [plan.node]
    peers = []
    for node in nodes:
        net = build_from_spec(model_spec(node, data)).to(device)
        if settings.channels_last:
            net.to(memory_format=torch.channels_last)
        peers.append(net)
    log.info(
        "%s: %s trained from scratch together with the student",
        "deep mutual learning" if plan.mutual else "online distillation",
        ", ".join(peer_names(plan)),
    )
    return Teachers(peers, online=True, peer_loss=peer_loss(plan.peer_temperature) if plan.mutual else None)


def finish_peers(teachers: Teachers, data: Splits, settings: TrainerSettings, device: torch.device, seed: int) -> None:
    """Recomputes the online peers' BatchNorm statistics and freezes them for the final figures."""
    calib = BatchLoader(
        data.train_x,
        data.train_y,
        settings.batch_size,
        seed=seed + 1,
        device=device,
        channels_last=settings.channels_last,
    )
    for net in teachers.models:
        if settings.bn_recalibrate:
            recalibrate_bn(net, calib, settings.bn_recalibrate_batches)
        net.eval().requires_grad_(False)
