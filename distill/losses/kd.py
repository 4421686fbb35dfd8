"""Hinton's knowledge-distillation loss and its two common variants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill import choices


def _kl(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    log_ps, log_pt = F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1)
    return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * T * T


def _soft_ce(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * CE(softmax(t/T), softmax(s/T)), averaged over the batch (KL plus the teacher's entropy)."""
    return -(F.softmax(t / T, dim=1) * F.log_softmax(s / T, dim=1)).sum(dim=1).mean() * T * T


def _mse(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """MSE between the logits, averaged over all of them (no temperature)."""
    return F.mse_loss(s, t)


# distill.loss=NAME: the soft-target term of each kind. A new kind is one function and one entry here.
SOFT_TERMS = {"kl": _kl, "mse": _mse, "soft_ce": _soft_ce}
LOSS_KINDS = choices.LOSS_KINDS
assert set(LOSS_KINDS) == set(SOFT_TERMS), "distill.choices.LOSS_KINDS names each soft term"


class KDLoss(nn.Module):
    """Soft targets from a teacher mixed with the hard labels.

    With student logits ``s``, teacher logits ``t``, labels ``y``, temperature ``T`` and ``alpha``::

        kl:      alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)
        soft_ce: alpha * T^2 * CE(softmax(t/T), log_softmax(s/T)) + (1 - alpha) * CE(s, y)
        mse:     alpha * MSE(s, t) + (1 - alpha) * CE(s, y)

    KL and the CE are averaged over the batch (``batchmean``); MSE over all logits. The ``T^2``
    factor keeps the soft-target gradients on the same scale as the hard ones when T changes
    (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network", section 2).
    ``soft_ce`` differs from ``kl`` only by the teacher's entropy, a constant: same gradients.
    ``alpha = 0`` is the student trained alone; the teacher is then not needed (``t`` may be None).
    Options: ``label_smoothing`` smooths the hard labels of the CE term (Szegedy et al. 2016);
    ``temperature_end`` moves T linearly from ``temperature`` at the first epoch to it at the last.

    Returns:
        The total loss and its parts (``soft``, ``hard``) as detached tensors.
    """

    def __init__(
        self,
        temperature: float = 4.0,
        alpha: float = 0.5,
        kind: str = "kl",
        label_smoothing: float = 0.0,
        temperature_end: float | None = None,
        epochs: int = 1,
    ) -> None:
        super().__init__()
        if kind not in LOSS_KINDS:
            raise ValueError(f"loss kind must be one of {LOSS_KINDS}, got {kind!r}")
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.kind = kind
        self.label_smoothing = float(label_smoothing)
        self.temperature_end = None if temperature_end is None else float(temperature_end)
        self.epochs = max(int(epochs), 1)

    def temperature_at(self, epoch: int) -> float:
        """``temperature``, or a linear schedule to ``temperature_end`` over the run's epochs."""
        if self.temperature_end is None or self.epochs == 1:
            return self.temperature
        frac = min(max(epoch, 0) / (self.epochs - 1), 1.0)
        return self.temperature + frac * (self.temperature_end - self.temperature)

    def soft(self, s: torch.Tensor, t: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        """The soft-target term, before weighting by alpha."""
        return SOFT_TERMS[self.kind](s.float(), t.float(), self.temperature_at(epoch))

    def forward(
        self,
        s: torch.Tensor,
        t: torch.Tensor | None,
        y: torch.Tensor,
        epoch: int = 0,
        y_soft: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = y if y_soft is None else y_soft  # soft targets from mixup / cutmix
        hard = F.cross_entropy(s.float(), target, label_smoothing=self.label_smoothing)
        if self.alpha == 0:
            return hard, {"hard": hard.detach()}
        if t is None:
            raise ValueError("alpha > 0 needs teacher logits")
        soft = self.soft(s, t, epoch)
        total = self.alpha * soft + (1 - self.alpha) * hard
        return total, {"soft": soft.detach(), "hard": hard.detach()}
