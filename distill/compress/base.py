"""What every compression method shares: the context it works in, and the short fine-tune."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from distill.data.base import Splits
from distill.engine.batches import BatchLoader
from distill.engine.loop import Teachers, train_one_epoch
from distill.losses.combined import DistillLoss
from distill.losses.kd import KDLoss


@dataclass
class Context:
    """The trained teacher and the data every candidate is made from and measured on."""

    teacher: nn.Module
    data: Splits
    device: torch.device
    work_dir: Path  # where candidates may write files (ONNX)
    teacher_onnx: Path | None = None
    seed: int = 0
    batch_size: int = 64


@dataclass
class Made:
    """A candidate: a PyTorch model (exported and measured by the stage) or a ready ONNX file."""

    label: str
    method: str
    model: nn.Module | None = None
    onnx: Path | None = None
    notes: dict = field(default_factory=dict)


def clone(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).train().requires_grad_(True)


def finetune(model: nn.Module, ctx: Context, epochs: int, lr: float, kd: bool, temperature: float = 4.0) -> None:
    """A short fine-tune on the training images: cross-entropy, or with ``kd`` half CE and half KD
    from the unchanged teacher (T=4). SGD with momentum, constant ``lr``."""
    if epochs <= 0:
        return
    loss_fn = DistillLoss(KDLoss(temperature=temperature, alpha=0.5 if kd else 0.0))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    loader = BatchLoader(
        ctx.data.train_x,
        ctx.data.train_y,
        ctx.batch_size,
        augment=ctx.data.augment,
        seed=ctx.seed,
        device=ctx.device,
    )
    teachers = Teachers([ctx.teacher.eval()]) if kd else None
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        train_one_epoch(model, loss_fn, loader, opt, teachers=teachers, epoch=epoch)
    model.eval()
