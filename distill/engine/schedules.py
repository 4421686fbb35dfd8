"""Learning-rate schedules built from torch's own schedulers, stepped once per epoch."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    SequentialLR,
    StepLR,
)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int = 0, start_factor: float = 0.1
) -> LRScheduler:
    """Linear warm-up from ``start_factor`` x lr over ``warmup_epochs``, then cosine decay to 0.

    Warm-up keeps deep networks (resnet152 from scratch, say) from diverging in their first
    epochs at learning rates that shallow ones take from the start (Goyal et al. 2017).
    """
    return _after_warmup(
        optimizer, CosineAnnealingLR(optimizer, T_max=max(1, epochs - warmup_epochs)), warmup_epochs, start_factor
    )


def warmup_step(
    optimizer: torch.optim.Optimizer,
    step_size: int,
    gamma: float = 0.1,
    warmup_epochs: int = 0,
    start_factor: float = 0.1,
) -> LRScheduler:
    """Linear warm-up over ``warmup_epochs``, then the learning rate times ``gamma`` every ``step_size`` epochs."""
    return _after_warmup(optimizer, StepLR(optimizer, step_size=step_size, gamma=gamma), warmup_epochs, start_factor)


def warmup_multistep(
    optimizer: torch.optim.Optimizer,
    milestones: list[int],
    gamma: float = 0.1,
    warmup_epochs: int = 0,
    start_factor: float = 0.1,
) -> LRScheduler:
    """Linear warm-up over ``warmup_epochs``, then the learning rate times ``gamma`` at each of ``milestones``.

    Milestones count epochs from the start of the run, warm-up included (epoch 150 of CRD's
    CIFAR-100 recipe is the 151st epoch whatever the warm-up), and must come after the warm-up.
    """
    marks = sorted(int(m) for m in milestones)
    if marks and marks[0] <= warmup_epochs:
        raise ValueError(f"milestones must come after the {warmup_epochs} warm-up epochs, got {marks}")
    # after a warm-up, SequentialLR restarts the main schedule at 0: its milestones move back
    main = MultiStepLR(optimizer, milestones=[m - max(warmup_epochs, 0) for m in marks], gamma=gamma)
    return _after_warmup(optimizer, main, warmup_epochs, start_factor)


def warmup_constant(optimizer: torch.optim.Optimizer, warmup_epochs: int = 0, start_factor: float = 0.1) -> LRScheduler:
    """Linear warm-up over ``warmup_epochs``, then a constant learning rate."""
    return _after_warmup(optimizer, ConstantLR(optimizer, factor=1.0, total_iters=0), warmup_epochs, start_factor)


def _after_warmup(
    optimizer: torch.optim.Optimizer, main: LRScheduler, warmup_epochs: int, start_factor: float
) -> LRScheduler:
    """``main`` after a linear warm-up from ``start_factor`` x lr (every schedule takes the teacher
    recipe's ``sched.warmup_epochs``)."""
    if warmup_epochs <= 0:
        return main
    warm = LinearLR(optimizer, start_factor=start_factor, total_iters=warmup_epochs)
    return SequentialLR(optimizer, [warm, main], milestones=[warmup_epochs])
