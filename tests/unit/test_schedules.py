"""``sched=multistep``: the learning rate of each epoch, warm-up or not, and across a resume."""

from __future__ import annotations

import pytest
import torch

from distill.engine.schedules import warmup_multistep


def _optimizer(lr: float = 0.05) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)


def _lrs(optimizer: torch.optim.Optimizer, scheduler, epochs: int) -> list[float]:
    """The learning rate each epoch trains at, the schedule stepped once per epoch as the loop does."""
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_crds_recipe_divides_by_10_at_epochs_150_180_210():
    opt = _optimizer()
    lrs = _lrs(opt, warmup_multistep(opt, [150, 180, 210], gamma=0.1), 240)
    want = [0.05] * 150 + [0.005] * 30 + [0.0005] * 30 + [0.00005] * 30
    assert lrs == pytest.approx(want, rel=1e-9)


def test_milestones_count_from_the_first_epoch_after_a_warm_up():
    opt = _optimizer()
    lrs = _lrs(opt, warmup_multistep(opt, [6, 8], gamma=0.5, warmup_epochs=3, start_factor=0.1), 10)
    assert lrs[:3] == pytest.approx([0.005, 0.02, 0.035])  # linear from 0.1 x lr over 3 epochs
    assert lrs[3:] == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125])  # epochs 3-9


def test_a_milestone_inside_the_warm_up_is_refused():
    with pytest.raises(ValueError, match="after the 5 warm-up epochs"):
        warmup_multistep(_optimizer(), [5, 10], warmup_epochs=5)


@pytest.mark.parametrize("warmup", [0, 2])
def test_a_resumed_schedule_goes_on_where_it_stopped(warmup):
    opt = _optimizer()
    sched = warmup_multistep(opt, [4, 7], warmup_epochs=warmup)
    whole = _lrs(opt, sched, 10)
    first = _optimizer()
    sched = warmup_multistep(first, [4, 7], warmup_epochs=warmup)
    head = _lrs(first, sched, 5)
    again = _optimizer()
    again.load_state_dict(first.state_dict())
    resumed = warmup_multistep(again, [4, 7], warmup_epochs=warmup)
    resumed.load_state_dict(sched.state_dict())
    assert head + _lrs(again, resumed, 5) == pytest.approx(whole)
