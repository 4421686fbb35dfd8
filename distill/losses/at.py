"""Attention transfer: the student matches the teacher's spatial attention maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import DistillInputs, Method
from distill.losses.connectors import Shapes, as_map, check_pairs, kind_of, map_shape


def attention(f: torch.Tensor, p: float) -> torch.Tensor:
    """``normalize(mean_c |f|^p)`` flattened to ``(B, H*W)`` (L2-normalised per sample)."""
    return F.normalize(f.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def _same_size(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pools the larger map down to the smaller one's size (as RepDistiller and mdistiller do);
    when neither is larger in both directions the student is resized bilinearly to the teacher."""
    (hs, ws), (ht, wt) = s.shape[2:], t.shape[2:]
    if (hs, ws) == (ht, wt):
        return s, t
    if hs >= ht and ws >= wt:
        return F.adaptive_avg_pool2d(s, (ht, wt)), t
    if hs <= ht and ws <= wt:
        return s, F.adaptive_avg_pool2d(t, (hs, ws))
    return F.interpolate(s, size=(ht, wt), mode="bilinear", align_corners=False), t


class AttentionTransfer(Method):
    """Activation-based attention transfer: "Paying More Attention to Attention: Improving the
    Performance of Convolutional Neural Networks via Attention Transfer", Zagoruyko and Komodakis,
    2017 (arXiv 1612.03928).

    For each tapped pair of maps ``(s_l, t_l)`` (tokens become maps through
    :func:`~distill.losses.connectors.as_map`), with ``a(f) = normalize(mean_c |f|^p)`` flattened
    over the ``H*W`` positions and L2-normalised per sample::

        at = weight * sum_l mean_{b, hw} (a(s_l) - a(t_l))^2

    Before ``a`` the larger of the two maps is average-pooled to the smaller one's size.
    This is exactly the authors' code (``cifar.py``: ``beta * sum(at_loss)`` with ``beta = 1e3``),
    RepDistiller (``-b 1000``, no halving) and mdistiller (``AT.LOSS.FEAT_WEIGHT = 1000``). The
    paper writes the term as ``beta/2 * sum_l || a_s - a_t ||_p``; the code's mean of squares is what
    its results were obtained with. ``p = 2`` as in the paper. No learned parameters.
    """

    def __init__(self, p: float = 2, weight: float = 1000.0) -> None:
        super().__init__()
        self.p = float(p)
        self.weight = float(weight)
        self.pairs: list[tuple[int, int]] = []

    def build(self, s_shapes: Shapes, t_shapes: Shapes, num_classes: int, num_samples: int) -> None:
        for role, shapes in (("student", s_shapes), ("teacher", t_shapes)):
            for shape in shapes:
                if kind_of(tuple(shape)) != "map":
                    raise ValueError(f"attention transfer needs feature maps; a {role} layer gives {tuple(shape)}")
                map_shape(tuple(shape))
        self.pairs = check_pairs(len(s_shapes), len(t_shapes))

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        pairs = self.pairs or check_pairs(len(b.s_feats), len(b.t_feats))
        total = b.s_logits.new_zeros((), dtype=torch.float32)
        for i, j in pairs:
            s, t = _same_size(as_map(b.s_feats[i].float()), as_map(b.t_feats[j].detach().float()))
            total = total + (attention(s, self.p) - attention(t, self.p)).pow(2).mean()
        return {"at": self.weight * total}
