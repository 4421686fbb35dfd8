"""Relational knowledge distillation: distances and angles between the samples of a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillInputs, Method
from distill.losses.connectors import Shapes, as_vector, check_pairs


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``(B, B)`` Euclidean distances, 0 on the diagonal (squared distances clamped at ``eps`` first)."""
    sq = e.pow(2).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(e)
    positive = d > 0
    mean = d[positive].mean() if positive.any() else d.new_ones(())
    return d / mean.clamp(min=1e-12)


def triplet_angles(e: torch.Tensor) -> torch.Tensor:
    """``(B, B, B)`` cosines of the angle at sample ``j`` in each triplet ``(i, j, k)``, flattened."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)  # diff[j, i] = unit(e_i - e_j)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


class RKD(Method):
    """ "Relational Knowledge Distillation", Park, Kim, Lu and Cho, 2019 (arXiv 1904.05068).

    On vectors ``e = as_vector(f)`` of each tapped pair (typically ``head``, the penultimate
    embedding), with ``d(e)_ij = ||e_i - e_j||_2 / mean_{i != j} ||e_i - e_j||_2`` and
    ``a(e)_ijk = cos angle(e_i - e_j, e_k - e_j)``::

        rkd_distance = distance_weight * sum_l huber(d(s_l), d(t_l))
        rkd_angle    = angle_weight    * sum_l huber(a(s_l), a(t_l))

    ``huber`` is smooth L1 with threshold 1, averaged over the ``B^2`` pairs and ``B^3`` triplets
    (the diagonal and degenerate triplets included, as in RepDistiller and mdistiller).
    ``distance_weight = 25`` and ``angle_weight = 50`` are the paper's classification settings and
    RepDistiller's / mdistiller's defaults. The angle term costs ``O(B^2 D)`` memory.
    """

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        self.distance_weight = float(distance_weight)
        self.angle_weight = float(angle_weight)
        self.pairs: list[tuple[int, int]] = []

    def build(self, s_shapes: Shapes, t_shapes: Shapes, num_classes: int, num_samples: int) -> None:
        self.pairs = check_pairs(len(s_shapes), len(t_shapes))

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        pairs = self.pairs or check_pairs(len(b.s_feats), len(b.t_feats))
        zero = b.s_logits.new_zeros((), dtype=torch.float32)
        dist, angle = zero, zero
        for i, j in pairs:
            s, t = as_vector(b.s_feats[i].float()), as_vector(b.t_feats[j].detach().float())
            dist = dist + F.smooth_l1_loss(_normalised_distances(s), _normalised_distances(t))
            angle = angle + F.smooth_l1_loss(triplet_angles(s), triplet_angles(t))
        return {"rkd_distance": self.distance_weight * dist, "rkd_angle": self.angle_weight * angle}
