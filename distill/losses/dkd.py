"""Decoupled knowledge distillation: the KD loss split into target-class and non-target-class parts."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillInputs, Method


def dkd_parts(
    s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(TCKD, NCKD)``, each ``T^2 * KL`` averaged over the batch, computed in log space."""
    T = temperature
    log_ps, log_pt = F.log_softmax(s.float() / T, dim=1), F.log_softmax(t.detach().float() / T, dim=1)
    target = F.one_hot(y.long(), s.shape[1]).bool()

    def binary(log_p: torch.Tensor) -> torch.Tensor:  # log [p_target, 1 - p_target]
        others = log_p.masked_fill(target, float("-inf")).logsumexp(dim=1)
        return torch.stack([log_p[target], others], dim=1)

    def non_target(log_p: torch.Tensor) -> torch.Tensor:  # log softmax over the other K - 1 classes
        rest = log_p[~target].view(len(s), -1)
        return rest - rest.logsumexp(dim=1, keepdim=True)

    def kl(log_ps: torch.Tensor, log_pt: torch.Tensor) -> torch.Tensor:
        return F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * T * T

    return kl(binary(log_ps), binary(log_pt)), kl(non_target(log_ps), non_target(log_pt))


class DKD(Method):
    """ "Decoupled Knowledge Distillation", Zhao, Cui, Song, Qiu and Liang, 2022 (arXiv 2203.08679).

    With the target class ``y``, ``b = [p_y, 1 - p_y]`` the binary target/non-target probabilities
    and ``p~`` the softmax over the ``K - 1`` non-target classes, all of ``logits / T``::

        tckd = warm * alpha * T^2 * KL(b(t) || b(s))
        nckd = warm * beta  * T^2 * KL(p~(t) || p~(s))
        warm = min((epoch + 1) / warmup_epochs, 1)          (1 when warmup_epochs = 0)

    KL is averaged over the batch. Classic KD is ``TCKD + (1 - p_y(t)) * NCKD``; DKD frees the NCKD
    weight. Defaults are the paper's CIFAR-100 settings and mdistiller's ``DKD`` config: alpha 1,
    beta 8 (the paper uses other betas for some pairs, 0.5 on ImageNet), T 4, a 20-epoch linear
    warm-up. mdistiller counts epochs from 1 and multiplies by ``min(epoch / 20, 1)``; epochs here
    count from 0, hence ``epoch + 1``: the same factor at every epoch. Uses ``b.s_logits``,
    ``b.t_logits`` and ``b.y``.
    """

    def __init__(
        self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0, warmup_epochs: int = 20
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"DKD temperature must be > 0, got {temperature}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.temperature = float(temperature)
        self.warmup_epochs = int(warmup_epochs)

    def warmup(self, epoch: int) -> float:
        if self.warmup_epochs <= 0:
            return 1.0
        return min((epoch + 1) / self.warmup_epochs, 1.0)

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        t = b.t_logits[0] if isinstance(b.t_logits, list) else b.t_logits
        if t is None:
            raise ValueError("DKD needs teacher logits")
        tckd, nckd = dkd_parts(b.s_logits, t, b.y, self.temperature)
        w = self.warmup(b.epoch)
        return {"tckd": w * self.alpha * tckd, "nckd": w * self.beta * nckd}
