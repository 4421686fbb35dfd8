"""Learning-rate schedules built from torch's own schedulers, stepped once per epoch."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_cosine(
    optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int = 0, start_factor: float = 0.1
) -> LRScheduler:
    """Linear warm-up from ``start_factor`` x lr over ``warmup_epochs``, then cosine decay to 0.

    Warm-up keeps deep networks (resnet152 from scratch, say) from diverging in their first
    epochs at learning rates that shallow ones take from the start (Goyal et al. 2017).
    """
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup_epochs))
    if warmup_epochs <= 0:
        return cosine
    warm = LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_epochs)
    return SequentialLR(optimizer, [warm, cosine], milestones=[warmup_epochs])
