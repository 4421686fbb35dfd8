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
    args = ["teacher=mlp", *DIGITS, "trainer.epochs=3", f"optim={optim}", f"sched={sched}", outputs_root(tmp_path)]
    if sched == "step":
        args.append("sched.step_size=1")
    api.run("teacher", [*args, f"paths.output_dir={out}"])
    state = load_state(out / "checkpoints" / "state.pt")
    group = state["optimizer"]["param_groups"][0]
    assert ("betas" in group) == (optim == "adamw") and ("momentum" in group) == (optim == "sgd")
    lrs = [r["lr"] for r in read_metrics(out)]
    assert lrs[0] < lrs[1], lrs  # the teacher recipe's warm-up (sched.warmup_epochs=2) works with every schedule
    if sched == "none":
        assert lrs[2] == pytest.approx(lrs[1]), lrs
    else:
        assert lrs[2] == pytest.approx(lrs[1] * 0.1), lrs  # then stepped down by gamma every epoch
