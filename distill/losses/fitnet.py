"""FitNets: the student regresses the teacher's intermediate features through learned connectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.losses.base import DistillInputs, Method
from distill.losses.connectors import Shapes, as_target, check_pairs, make_connector


class FitNet(Method):
    """Hints: "FitNets: Hints for Thin Deep Nets", Romero, Ballas, Kahou, Chassang, Gatta and Bengio,
    2015 (arXiv 1412.6550).

    For the L tapped layer pairs ``(s_l, t_l)`` (:func:`~distill.losses.connectors.pair_up` when the
    counts differ) and a learned connector ``r_l`` per pair (1x1 conv + BN for maps, Linear for
    vectors; :func:`~distill.losses.connectors.make_connector`)::

        hint = weight * (1/L) * sum_l MSE(r_l(s_l), t_l)

    MSE is the mean over every element of the batch. ``weight = 100`` is the hint weight of the
    CRD benchmark (RepDistiller ``-b 100``, mdistiller ``FITNET.LOSS.FEAT_WEIGHT``), where the hint
    trains together with the cross-entropy in one stage (``hint_epochs = 0``).

    ``hint_epochs > 0`` is the paper's two-stage training: for the first ``hint_epochs`` epochs
    :meth:`hint_only` is true and the training loss is the hint alone (the combined loss drops its
    cross-entropy and logit-KD terms); afterwards the hint is switched off (its term is 0) and the
    student trains on the cross-entropy and logit-KD terms (set ``distill.alpha > 0``, as the paper
    follows hints with KD).
    """

    def __init__(self, hint_epochs: int = 0, weight: float = 100.0) -> None:
        super().__init__()
        if isinstance(hint_epochs, bool) or not isinstance(hint_epochs, int) or hint_epochs < 0:
            raise ValueError(f"hint_epochs must be a whole number >= 0, got {hint_epochs!r}")
        self.hint_epochs = hint_epochs
        self.weight = float(weight)
        self.connectors = nn.ModuleList()
        self.pairs: list[tuple[int, int]] = []

    def hint_only(self, epoch: int) -> bool:
        """True during the hint stage of two-stage training (the engine then drops CE and KD)."""
        return epoch < self.hint_epochs

    def build(self, s_shapes: Shapes, t_shapes: Shapes, num_classes: int, num_samples: int) -> None:
        self.pairs = check_pairs(len(s_shapes), len(t_shapes))
        self.connectors = nn.ModuleList(make_connector(s_shapes[i], t_shapes[j]) for i, j in self.pairs)

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        if not self.pairs:
            raise RuntimeError("FitNet.build() must run before the first forward (it makes the connectors)")
        if self.hint_epochs > 0 and not self.hint_only(b.epoch):
            return {"hint": b.s_logits.new_zeros((), dtype=torch.float32)}
        losses = []
        for (i, j), connector in zip(self.pairs, self.connectors):
            s = connector(b.s_feats[i])
            losses.append(F.mse_loss(s, as_target(b.t_feats[j], s)))
        return {"hint": self.weight * torch.stack(losses).mean()}
