"""Similarity-preserving distillation: the student keeps the teacher's sample-to-sample similarities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillInputs, Method
from distill.losses.connectors import Shapes, check_pairs


def similarity(f: torch.Tensor) -> torch.Tensor:
    """``(B, B)``: the Gram matrix of the flattened features, each row L2-normalised."""
    flat = f.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


class SimilarityPreserving(Method):
    """ "Similarity-Preserving Knowledge Distillation", Tung and Mori, 2019 (arXiv 1907.09682).

    For each tapped pair ``(s_l, t_l)`` of any shape, flattened to ``F = (B, -1)``, and
    ``G = row_normalise(F F^T)`` (each row divided by its L2 norm)::

        sp = weight * sum_l || G(s_l) - G(t_l) ||_F^2 / B^2

    ``weight = 3000`` is the paper's gamma (also RepDistiller ``-b 3000``, mdistiller
    ``SP.LOSS.FEAT_WEIGHT``). RepDistiller applies it to the last stage only; ``auto`` layers sum
    over every stage. No learned parameters; student and teacher widths may differ.
    """

    def __init__(self, weight: float = 3000.0) -> None:
        super().__init__()
        self.weight = float(weight)
        self.pairs: list[tuple[int, int]] = []

    def build(self, s_shapes: Shapes, t_shapes: Shapes, num_classes: int, num_samples: int) -> None:
        self.pairs = check_pairs(len(s_shapes), len(t_shapes))

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        pairs = self.pairs or check_pairs(len(b.s_feats), len(b.t_feats))
        total = b.s_logits.new_zeros((), dtype=torch.float32)
        for i, j in pairs:
            s, t = b.s_feats[i].float(), b.t_feats[j].detach().float()
            total = total + (similarity(s) - similarity(t)).pow(2).sum() / s.shape[0] ** 2
        return {"sp": self.weight * total}
