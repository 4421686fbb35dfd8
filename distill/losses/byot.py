"""Be Your Own Teacher: shallow auxiliary classifiers learn from the network's own deepest layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.losses.base import DistillInputs, Method
from distill.losses.connectors import MAP, Shapes, as_vector, kind_of, map_shape, vector_dim


def _width(shape: tuple[int, ...]) -> int:
    return map_shape(shape)[0] if kind_of(shape) == MAP else vector_dim(shape)


class AuxHead(nn.Module):
    """An auxiliary classifier on one tap: returns its feature vector (width of the deepest tap) and logits.

    Maps ``(C, H, W)`` go through a bottleneck (1x1 conv to ``width/4``, a ``k x k`` conv with stride
    ``k`` that brings the map towards the deepest tap's size, 3x3 when no shrinking is needed, a 1x1
    conv to ``width``; BatchNorm after each, ReLU after the first two), then a global average pool.
    Vectors and token sequences (averaged) go through one Linear to ``width``. Then Linear to classes.
    """

    def __init__(self, shape: tuple[int, ...], last: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        width = _width(last)
        self.is_map = len(shape) == 3
        if self.is_map:
            c, h, w = shape
            shrink = 1
            if kind_of(last) == MAP:
                _, hl, wl = map_shape(last)
                shrink = max(min(h // max(hl, 1), w // max(wl, 1)), 1)
            mid = max(width // 4, 1)
            k, pad = (shrink, 0) if shrink > 1 else (3, 1)
            self.body = nn.Sequential(
                nn.Conv2d(c, mid, 1, bias=False),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, mid, k, stride=max(shrink, 1), padding=pad, bias=False),
                nn.BatchNorm2d(mid),
                nn.ReLU(inplace=True),
                nn.Conv2d(mid, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(1),
            )
        else:
            self.body = nn.Linear(vector_dim(shape), width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(f.float() if self.is_map else as_vector(f.float())).float()
        return h, self.fc(h).float()


class SelfDistillation(Method):
    """ "Be Your Own Teacher: Improve the Performance of Convolutional Neural Networks via Self
    Distillation", Zhang, Song, Gao, Chen, Bao and Ma, 2019 (arXiv 1905.08094). No teacher.

    One auxiliary head per student tap except the deepest one (:class:`AuxHead`: feature ``h_i``
    and logits ``z_i``); the student's own logits ``s`` and deepest tap ``f_L`` teach them::

        byot_ce   = (1 - alpha) * sum_i CE(z_i, y)
        byot_kd   = alpha * T^2 * sum_i KL(softmax(s.detach()/T) || softmax(z_i/T))
        byot_hint = feature_weight * sum_i mean_b || h_i - as_vector(f_L).detach() ||_2^2

    The deepest classifier gets its cross-entropy from the engine (``distill.alpha = 0``: the plain
    CE on ``s``). KL is averaged over the batch. Defaults are those of the first author's code
    (ArchipLab-LinfengZhang/pytorch-self-distillation-final: ``temperature 3``,
    ``loss_coefficient 0.3``, ``feature_loss_coefficient 0.03``); the paper gives no values.
    Differences from that code: it omits the ``T^2`` factor (here kept, as in Hinton et al. and the
    formula above) and uses an L2 distance of pooled features after a Linear adapter; here the
    hint is the per-sample squared distance of the bottleneck's pooled output (the paper's
    "L2 loss from hints"), averaged over the batch, on every head. The heads and their
    BatchNorms train with the student and are left out of the exported student.
    """

    uses_teacher = False

    def __init__(self, temperature: float = 3.0, alpha: float = 0.3, feature_weight: float = 0.03) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.feature_weight = float(feature_weight)
        self.heads = nn.ModuleList()

    def build(self, s_shapes: Shapes, t_shapes: Shapes, num_classes: int, num_samples: int) -> None:
        if len(s_shapes) < 2:
            raise ValueError(
                f"self-distillation needs at least 2 student layers (a shallow one, the deepest), got {len(s_shapes)}"
            )
        last = tuple(s_shapes[-1])
        self.heads = nn.ModuleList(AuxHead(tuple(shape), last, num_classes) for shape in s_shapes[:-1])

    def forward(self, b: DistillInputs) -> dict[str, torch.Tensor]:
        if len(self.heads) == 0:
            raise RuntimeError("SelfDistillation.build() must run before the first forward (it makes the heads)")
        T = self.temperature
        log_teacher = F.log_softmax(b.s_logits.detach().float() / T, dim=1)
        target = as_vector(b.s_feats[-1].detach().float())
        ce, kd, hint = [], [], []
        for head, f in zip(self.heads, b.s_feats[:-1]):
            h, z = head(f)
            ce.append(F.cross_entropy(z, b.ce_target))
            log_z = F.log_softmax(z / T, dim=1)
            kd.append(F.kl_div(log_z, log_teacher, reduction="batchmean", log_target=True) * T * T)
            hint.append((h - target).pow(2).sum(dim=1).mean())
        return {
            "byot_ce": (1 - self.alpha) * torch.stack(ce).sum(),
            "byot_kd": self.alpha * torch.stack(kd).sum(),
            "byot_hint": self.feature_weight * torch.stack(hint).sum(),
        }
