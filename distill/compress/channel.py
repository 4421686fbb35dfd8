"""Structured channel pruning with torch-pruning: whole channels of low L1 norm removed, with
every layer that depends on them resized, so the network really is smaller and faster; then a
short fine-tune. Needs ``pip install 'distill[prune]'``."""

from __future__ import annotations

import time

from torch import nn

from distill.compress.base import Context, Made, clone, finetune


def candidates(ctx: Context, ratios: list[float], finetune_epochs: int, lr: float, kd: bool) -> list[Made]:
    import torch_pruning as tp

    out = []
    example = ctx.data.train_x[:2].float().div(255).to(ctx.device)
    for r in ratios:
        start = time.perf_counter()
        model = clone(ctx.teacher)
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]  # the classes stay
        pruner = tp.pruner.MagnitudePruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=float(r),
            ignored_layers=[last],
        )
        pruner.step()
        finetune(model, ctx, finetune_epochs, lr, kd)
        out.append(
            Made(f"channels -{r:.0%}", "structured pruning", model, notes={"seconds": time.perf_counter() - start})
        )
    return out
