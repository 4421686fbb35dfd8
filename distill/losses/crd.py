"""Contrastive representation distillation with memory banks of past embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.losses.base import DistillInputs, Method
from distill.losses.connectors import Shapes, as_vector, vector_dim

_EPS = 1e-7


def nce_loss(scores: torch.Tensor, num_samples: int) -> torch.Tensor:
    """NCE loss of ``(B, 1 + K)`` normalised scores ``P`` (the positive first) against uniform noise
    ``Pn = 1/N``: ``-(1/B) sum_b [log(P_b0 / (P_b0 + K Pn)) + sum_k log(K Pn / (P_bk + K Pn))]``."""
    k_pn = (scores.shape[1] - 1) / num_samples
    log_pos = torch.log(scores[:, 0] / (scores[:, 0] + k_pn + _EPS))
    log_neg = torch.log(k_pn / (scores[:, 1:] + k_pn + _EPS))
    return -(log_pos.sum() + log_neg.sum()) / scores.shape[0]


class CRD(Method):
    """ "Contrastive Representation Distillation", Tian, Krishnan and Isola, 2020 (arXiv 1910.10699).

    The last student and teacher taps (``head``: the penultimate embeddings; maps are pooled) are
    embedded by ``g_s``, ``g_t`` (Linear to ``feat_dim``, L2-normalised; both learned, the teacher's
    features stay detached). Two memory banks of ``N = num_samples`` unit vectors keep the past
    embeddings of every training sample, ``M_s`` of the student and ``M_t`` of the teacher. For each
    sample ``b`` (its index in the training split ``i_b``) ``K = min(nce_k, N - 1)`` negatives
    ``j`` are drawn uniformly from the other samples (never ``i_b``; with replacement) and::

        P_s(b, j) = exp(<g_s(s_b), M_t[j]> / nce_t) / Z_s   (student anchor, teacher bank)
        P_t(b, j) = exp(<g_t(t_b), M_s[j]> / nce_t) / Z_t   (teacher anchor, student bank)
        crd = weight * (NCE(P_s) + NCE(P_t))
        NCE(P) = -(1/B) sum_b [log(P_b,i / (P_b,i + K/N)) + sum_j log((K/N) / (P_b,j + K/N))]

    This is the NCE form of the paper's objective (its eq. 18-19: a critic ``h = P / (P + K/N)``
    scored against uniform noise), with the constants ``Z`` estimated once, on the first batch, as
    ``mean(exp(score/nce_t)) * N`` and kept in buffers; it is what the paper's CIFAR-100 results
    used (RepDistiller ``crd/criterion.py``; mdistiller keeps it). The softmax / InfoNCE variant
    (``-log softmax`` over the 1 + K scores) is not used, so results compare with the published ones.
    After the loss, the banks move towards the batch: ``M[i_b] = normalize(momentum * M[i_b] +
    (1 - momentum) * g(x_b))`` (in training mode only).

    Defaults: ``feat_dim = 128``, ``nce_t = 0.07``, ``momentum = 0.5`` and ``weight = 0.8`` are the
    paper's and RepDistiller's; they use ``nce_k = 16384`` negatives, here 4096 to keep the
    ``B x (K + 1) x feat_dim`` bank reads small. RepDistiller draws negatives from other classes;
    a loss sees no dataset, so here they come from all other samples. Random draws use torch's
    global generator, so a seeded run is repeatable.
    """

    needs_index = True

    def __init__(
        self, feat_dim: int = 128, nce_k: int = 4096, nce_t: float = 0.07, momentum: float = 0.5, weight: float = 0.8
    ) -> None:
        super().__init__()
        self.feat_dim = int(feat_dim)
        self.nce_k = int(nce_k)
        self.nce_t = float(nce_t)
        self.momentum = float(momentum)
        self.weight = float(weight)
        self.num_samples = 0
        self.embed_s: nn.Module | None = None
        self.embed_t: nn.Module | None = None

    def build(self, s_shapes: Shapes, t_shapes: Shapes, num_classes: int, num_samples: int) -> None:
        if not s_shapes or not t_shapes:
            raise ValueError("CRD needs a student and a teacher layer (distill.student_layers / teacher_layers: head)")
        if num_samples < 2:
            raise ValueError(f"CRD needs a training split of at least 2 samples, got {num_samples}")
        self.num_samples = int(num_samples)
        self.embed_s = nn.Linear(vector_dim(tuple(s_shapes[-1])), self.feat_dim)
        self.embed_t = nn.Linear(vector_dim(tuple(t_shapes[-1])), self.feat_dim)
        self.register_buffer("memory_s", F.normalize(torch.randn(num_samples, self.feat_dim), dim=1))
        self.register_buffer("memory_t", F.normalize(torch.randn(num_samples, self.feat_dim), dim=1))
        self.register_buffer("z_s", torch.tensor(-1.0))
        self.register_buffer("z_t", torch.tensor(-1.0))

    def sample_negatives(self, index: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` sample positions drawn uniformly from ``[0, N)`` without each row's own index."""
        k = min(self.nce_k, self.num_samples - 1)
        draw = torch.randint(0, self.num_samples - 1, (index.shape[0], k), device=index.device)
        return draw + (draw >= index[:, None]).long()  # skips the positive, keeps the draw uniform

    def _scores(self, anchor: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        logits = torch.bmm(bank[rows].detach(), anchor.unsqueeze(2)).squeeze(2) / self.nce_t
        scores = torch.exp(logits)
        with torch.no_grad():  # the normalisation constant: set on the first batch, then kept (no device sync)
            z.copy_(torch.where(z < 0, scores.mean() * self.num_samples, z))
        return scores / z

    @torch.no_grad()
    def _update(self, bank: torch.Tensor, index: torch.Tensor, v: torch.Tensor) -> None:
        mixed = bank[index] * self.momentum + v.detach() * (1 - self.momentum)
        bank.index_copy_(0, index, F.normalize(mixed, dim=1))

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        if self.embed_s is None or self.embed_t is None:
            raise RuntimeError("CRD.build() must run before the first forward (it makes the memory banks)")
        if b.index is None:
            raise ValueError("CRD needs the samples' positions in the training split (DistillInputs.index)")
        index = b.index.to(self.memory_s.device).long()
        v_s = F.normalize(self.embed_s(as_vector(b.s_feats[-1].float())).float(), dim=1)
        v_t = F.normalize(self.embed_t(as_vector(b.t_feats[-1].detach().float())).float(), dim=1)
        rows = torch.cat([index[:, None], self.sample_negatives(index)], dim=1)
        loss_s = nce_loss(self._scores(v_s, self.memory_t, rows, self.z_s), self.num_samples)
        loss_t = nce_loss(self._scores(v_t, self.memory_s, rows, self.z_t), self.num_samples)
        if self.training:
            self._update(self.memory_s, index, v_s)
            self._update(self.memory_t, index, v_t)
        return {"crd": self.weight * (loss_s + loss_t)}
