"""Probabilistic knowledge transfer: match the distributions of sample similarities."""

from __future__ import annotations

import torch

from distill.losses.base import DistillInputs, Method
from distill.losses.connectors import Shapes, as_vector, check_pairs


def similarity_probabilities(f: torch.Tensor, eps: float) -> torch.Tensor:
    """``(B, B)`` conditional probabilities ``p_{j|i}`` from the cosine kernel ``(cos + 1) / 2``."""
    unit = f / (f.norm(dim=1, keepdim=True) + eps)
    kernel = (unit @ unit.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


class PKT(Method):
    """ "Learning Deep Representations with Probabilistic Knowledge Transfer", Passalis and Tefas,
    2018 (arXiv 1803.10837).

    On vectors ``e = as_vector(f)`` of each tapped pair, with the cosine kernel
    ``K_ij = (cos(e_i, e_j) + 1) / 2`` (the vectors divided by ``norm + eps``) and conditional
    probabilities ``p_{j|i} = K_ij / sum_k K_ik`` (diagonal included)::

        pkt = weight * sum_l mean_{i,j} p^t_{j|i} * log((p^t_{j|i} + eps) / (p^s_{j|i} + eps))

    The mean over all ``B^2`` entries (not a per-row sum) follows the authors' code, which
    RepDistiller and mdistiller reuse; ``weight = 30000`` is their setting (RepDistiller ``-b 30000``,
    mdistiller ``PKT.LOSS.FEAT_WEIGHT``), ``eps = 1e-7`` theirs too. No learned parameters.
    """

    def __init__(self, weight: float = 30000.0, eps: float = 1e-7) -> None:
        super().__init__()
        self.weight = float(weight)
        self.eps = float(eps)
        self.pairs: list[tuple[int, int]] = []

    def build(self, s_shapes: Shapes, t_shapes: Shapes, num_classes: int, num_samples: int) -> None:
        self.pairs = check_pairs(len(s_shapes), len(t_shapes))

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        pairs = self.pairs or check_pairs(len(b.s_feats), len(b.t_feats))
        total = b.s_logits.new_zeros((), dtype=torch.float32)
        for i, j in pairs:
            ps = similarity_probabilities(as_vector(b.s_feats[i].float()), self.eps)
            pt = similarity_probabilities(as_vector(b.t_feats[j].detach().float()), self.eps)
            total = total + (pt * torch.log((pt + self.eps) / (ps + self.eps))).mean()
        return {"pkt": self.weight * total}
