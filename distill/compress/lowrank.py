"""Low-rank factorization: each convolution and linear layer whose weight matrix W (out x in·k·k)
has a rank-r truncated SVD W ≈ U_r S_r V_r^T with fewer parameters is replaced by two layers
(a k x k convolution to r channels, then a 1x1 one; or two linear layers); a short fine-tune
follows. r = rank_ratio x min(out, in·k·k)."""

from __future__ import annotations

import time

import torch
from torch import nn

from distill.compress.base import Context, Made, clone, finetune


def _factor(layer: nn.Module, ratio: float) -> nn.Module | None:
    w = layer.weight.detach()
    mat = w.reshape(w.shape[0], -1)
    r = max(1, int(ratio * min(mat.shape)))
    if r * (mat.shape[0] + mat.shape[1]) >= mat.numel():  # no saving
        return None
    u, s, vh = torch.linalg.svd(mat.float(), full_matrices=False)
    a = (vh[:r] * s[:r, None].sqrt()).to(w.dtype)  # r x in·k·k
    b = (u[:, :r] * s[:r].sqrt()).to(w.dtype)  # out x r
    if isinstance(layer, nn.Linear):
        first, second = nn.Linear(mat.shape[1], r, bias=False), nn.Linear(r, mat.shape[0], bias=layer.bias is not None)
        first.weight.data.copy_(a)
        second.weight.data.copy_(b)
    else:
        first = nn.Conv2d(
            layer.in_channels,
            r,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            groups=1,
            bias=False,
        )
        second = nn.Conv2d(r, layer.out_channels, 1, bias=layer.bias is not None)
        first.weight.data.copy_(a.reshape(r, *w.shape[1:]))
        second.weight.data.copy_(b.reshape(layer.out_channels, r, 1, 1))
    if layer.bias is not None:
        second.bias.data.copy_(layer.bias.detach())
    return nn.Sequential(first, second)


def factorize(model: nn.Module, ratio: float) -> int:
    """Replaces every layer where it saves parameters; returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) or (isinstance(child, nn.Conv2d) and child.groups == 1):
                new = _factor(child, ratio)
                if new is not None:
                    setattr(parent, name, new)
                    replaced += 1
    return replaced


def candidates(ctx: Context, rank_ratios: list[float], finetune_epochs: int, lr: float, kd: bool) -> list[Made]:
    out = []
    for ratio in rank_ratios:
        start = time.perf_counter()
        model = clone(ctx.teacher)
        replaced = factorize(model, float(ratio))
        finetune(model.to(ctx.device), ctx, finetune_epochs, lr, kd)
        out.append(
            Made(
                f"low rank {ratio:g}",
                "low-rank SVD",
                model,
                notes={"seconds": time.perf_counter() - start, "layers_factorized": replaced},
            )
        )
    return out
