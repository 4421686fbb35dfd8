"""``optim=`` and ``sched=``: the optimizer and schedule asked for are the ones that run."""

from __future__ import annotations

import pytest

from distill import api
from distill.engine.checkpoint import load_state
from tests.conftest import (
    DIGITS,
    outputs_root,
    read_metrics,
)


@pytest.mark.parametrize("optim, sched", [("adamw", "step"), ("sgd", "none")])
def test_optimizers_and_schedules_are_the_ones_asked_for(optim, sched, tmp_path):
    out = tmp_path / "run"
    args = ["teacher=mlp", *DIGITS, "trainer.epochs=4", f"optim={optim}", f"sched={sched}", outputs_root(tmp_path)]
    if sched == "step":
        args.append("sched.step_size=1")
    api.run("teacher", [*args, f"paths.output_dir={out}"])
    state = load_state(out / "checkpoints" / "state.pt")
    group = state["optimizer"]["param_groups"][0]
    assert ("betas" in group) == (optim == "adamw") and ("momentum" in group) == (optim == "sgd")
    # each epoch's line holds the lr it trained with: the teacher recipe's warm-up (sched.warmup_epochs=2,
    # from 0.1 x lr 0.05) works with every schedule, then the full lr, then stepped down by gamma every epoch
    lrs = [r["lr"] for r in read_metrics(out)]
    after = 0.05 if sched == "none" else 0.005
    assert lrs == pytest.approx([0.005, 0.0275, 0.05, after]), lrs
