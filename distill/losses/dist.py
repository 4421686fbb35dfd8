"""DIST: distillation by matching prediction relations with Pearson correlation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillInputs, Method


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise Pearson correlation of two ``(R, M)`` matrices: ``(R,)``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


class DIST(Method):
    """ "Knowledge Distillation from A Stronger Teacher", Huang, You, Wang, Qian and Xu, 2022
    (arXiv 2205.10536).

    With ``Y = softmax(logits / T)`` row-wise, ``(B, K)``, and ``rho`` the Pearson correlation::

        dist_inter = beta  * T^2 * (1 - mean_b rho(Y_s[b, :], Y_t[b, :]))   (across classes, per sample)
        dist_intra = gamma * T^2 * (1 - mean_k rho(Y_s[:, k], Y_t[:, k]))   (across samples, per class)

    ``rho(u, v) = <u - mean u, v - mean v> / (|u - mean u| |v - mean v| + 1e-8)``. Defaults
    ``beta = gamma = 1``, ``T = 1`` are the paper's ImageNet settings and the official code's
    defaults (hunto/DIST_KD); CIFAR-100 reimplementations commonly use ``T = 4`` with
    ``beta = gamma = 2``. Pearson correlation ignores shifts and scales of the probabilities, so a
    much stronger teacher is matched in its relations, not its exact values.
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"DIST temperature must be > 0, got {temperature}")
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.temperature = float(temperature)

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        t = b.t_logits[0] if isinstance(b.t_logits, list) else b.t_logits
        if t is None:
            raise ValueError("DIST needs teacher logits")
        T = self.temperature
        ys = F.softmax(b.s_logits.float() / T, dim=1)
        yt = F.softmax(t.detach().float() / T, dim=1)
        inter = 1 - pearson(ys, yt).mean()
        intra = 1 - pearson(ys.t(), yt.t()).mean()
        return {"dist_inter": self.beta * T * T * inter, "dist_intra": self.gamma * T * T * intra}
