"""What every distillation method sees, and the shape of a method.

A method is an ``nn.Module`` whose ``forward`` takes one :class:`DistillInputs` and returns its
named loss terms (scalars, already weighted by the method's own inner weights). The training
loss sums them, times ``distill.beta``, with the hard-label and logit terms
(:class:`distill.losses.combined.DistillLoss`). Methods see tensors only, never a model or a
dataset: features come from forward hooks on the layers named in the config
(``distill.student_layers`` / ``distill.teacher_layers``), in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class DistillInputs:
    """One training batch as a method sees it.

    Attributes:
        s_logits: student logits (B, K).
        t_logits: teacher logits (B, K), or None when the method runs without a teacher; several
            teachers give a list.
        y: labels (B,).
        s_feats: student features at ``distill.student_layers``: (B, C, H, W) maps, (B, D)
            vectors or (B, N, D) token sequences.
        t_feats: teacher features at ``distill.teacher_layers`` (computed without autograd).
        index: the samples' positions in the training split (B,), for methods with a memory bank.
        epoch: the current epoch, counting from 0 (for warm-ups and two-stage schedules).
        y_soft: with mixup/cutmix, the mixed targets (B, K) that replace ``y`` in cross-entropy terms;
            ``y`` is then the label of the larger share.
    """

    s_logits: torch.Tensor
    t_logits: torch.Tensor | list[torch.Tensor] | None
    y: torch.Tensor
    s_feats: list[torch.Tensor] = field(default_factory=list)
    t_feats: list[torch.Tensor] = field(default_factory=list)
    index: torch.Tensor | None = None
    epoch: int = 0
    y_soft: torch.Tensor | None = None

    @property
    def ce_target(self) -> torch.Tensor:
        """What a cross-entropy term against the labels should use: ``y_soft`` when mixing, else ``y``."""
        return self.y if self.y_soft is None else self.y_soft


class Method(nn.Module):
    """Base of the distillation methods: override :meth:`forward`, and :meth:`build` for connectors.

    Class attributes:
        uses_teacher: False for methods that distil a network into itself (no teacher is loaded).
        needs_index: True for methods that keep a per-sample memory bank.
    """

    uses_teacher: bool = True
    needs_index: bool = False

    def build(
        self,
        s_shapes: list[tuple[int, ...]],
        t_shapes: list[tuple[int, ...]],
        num_classes: int,
        num_samples: int,
    ) -> None:
        """Creates learned parts (connectors, heads, memory banks) from the per-sample feature shapes
        (batch dimension dropped) seen on a first batch, before the optimizer is made. Their
        parameters train with the student and are not part of the exported student."""

    def check(self, num_teachers: int) -> list[str]:
        """What is wrong with this method's settings for a run with ``num_teachers`` frozen teachers,
        as ``"<argument> ..."`` lines (the train stage reports them as ``distill.method.<argument>``
        before anything runs). Settings wrong on their own are the constructor's ``ValueError``."""
        return []

    def advice(self, num_teachers: int) -> list[str]:
        """Warnings for settings that run but are likely not what the user meant (logged, not refused)."""
        return []

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError
