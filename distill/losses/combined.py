"""The training loss of a ``train`` run: hard labels, logit distillation and one method's terms.

    loss = (1 - alpha) * CE(s, y) + alpha * KD(s, t) + beta * sum(method terms)

``KD`` is :class:`distill.losses.kd.KDLoss`'s soft term; the method (FitNets, attention transfer,
CRD, ...) is one :class:`distill.losses.base.Method`. With ``alpha = 0`` and no method the
student trains alone.
"""

from __future__ import annotations

import torch
from torch import nn

from distill.losses.base import DistillInputs, Method
from distill.losses.kd import KDLoss


class DistillLoss(nn.Module):
    """Sums the hard, logit and method terms; returns ``(total, parts)`` with detached parts.

    A method that trains on hints alone for its first epochs (two-stage FitNets) says so through
    ``hint_only(epoch)``; the hard and logit terms are then left out.
    """

    def __init__(self, kd: KDLoss, method: Method | None = None, beta: float = 0.0) -> None:
        super().__init__()
        self.kd = kd
        self.method = method
        self.beta = float(beta)

    @property
    def uses_teacher(self) -> bool:
        if self.kd.alpha > 0:
            return True
        return self.method is not None and self.beta > 0 and self.method.uses_teacher

    def forward(
        self,
        s_logits: torch.Tensor,
        t_logits: torch.Tensor | list[torch.Tensor] | None,
        y: torch.Tensor,
        s_feats: list[torch.Tensor] | None = None,
        t_feats: list[torch.Tensor] | None = None,
        index: torch.Tensor | None = None,
        epoch: int = 0,
        y_soft: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``y`` are class indices; ``y_soft`` (B, K), when given (mixup, cutmix), replaces them in the CE term."""
        first_t = t_logits[0] if isinstance(t_logits, list) else t_logits
        if self.method is not None and getattr(self.method, "hint_only", None) and self.method.hint_only(epoch):
            total, parts = torch.zeros((), device=s_logits.device), {}
        else:
            total, parts = self.kd(s_logits, first_t if self.kd.alpha > 0 else None, y, epoch=epoch, y_soft=y_soft)
        if self.method is None or self.beta == 0:
            return total, parts
        terms = self.method(
            DistillInputs(s_logits, t_logits, y, list(s_feats or []), list(t_feats or []), index, epoch, y_soft)
        )
        for name, value in terms.items():
            total = total + self.beta * value
            parts[name] = value.detach()
        return total, parts
