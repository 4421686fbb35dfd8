"""Unstructured global magnitude pruning (``torch.nn.utils.prune``): the smallest weights of every
convolution and linear layer, ranked together, set to zero; a short fine-tune keeps the mask.

The network keeps its shape, so its ONNX file and its dense-kernel latency stay those of the
teacher: sparsity pays only with sparse kernels or compression of the file."""

from __future__ import annotations

import time

from torch import nn
from torch.nn.utils import prune

from distill.compress.base import Context, Made, clone, finetune


def _weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def candidates(ctx: Context, sparsities: list[float], finetune_epochs: int, lr: float, kd: bool) -> list[Made]:
    out = []
    for s in sparsities:
        start = time.perf_counter()
        model = clone(ctx.teacher)
        params = _weights(model)
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(s))
        finetune(model, ctx, finetune_epochs, lr, kd)
        for module, name in params:  # the mask becomes the weight
            prune.remove(module, name)
        zeros = sum(int((m.weight == 0).sum()) for m, _ in params)
        total = sum(m.weight.numel() for m, _ in params)
        out.append(
            Made(
                f"magnitude {s:.0%}",
                "unstructured pruning",
                model,
                notes={"seconds": time.perf_counter() - start, "zero_weights": zeros / total},
            )
        )
    return out
