"""``distill chain``: born-again generations and teacher-assistant chains of different models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill import api
from tests.conftest import (
    DIGITS,
    ONE_EPOCH,
    outputs_root,
    read_summary,
    run_cli,
)


def test_born_again_chain_runs_each_generation_from_the_last(digits_teacher, tmp_path):
    result = run_cli(
        "chain",
        "chain.models=[lenet5,lenet5,lenet5]",
        "teacher=lenet5",
        f"teacher.checkpoint={digits_teacher}",
        *ONE_EPOCH,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (chain,) = list((tmp_path / "outputs" / "chain").glob("*/*/chain.json"))
    steps = json.loads(chain.read_text())["steps"]
    assert [s["model"] for s in steps] == ["lenet5"] * 3
    gen1, gen2 = Path(steps[1]["run"]), Path(steps[2]["run"])
    assert read_summary(gen2)["teacher_weights"] == str((gen1 / "checkpoints" / "best.safetensors").resolve())


@pytest.mark.slow  # end to end across processes or runs: CI's second step
def test_a_chain_of_different_models(tmp_path):
    summary = api.run(
        "chain", ["chain.models=[resnet18,lenet5,mlp]", *DIGITS, "trainer.epochs=1", outputs_root(tmp_path)]
    )  # fmt: skip
    steps = summary["steps"]
    assert [s["model"] for s in steps] == ["resnet18", "lenet5", "mlp"]
    first = json.loads((Path(steps[0]["run"]) / "summary.json").read_text())
    assert first["epochs"] == 1, "trainer.epochs given for the chain applies to its first step too"
    for before, after in zip(steps, steps[1:]):  # each step learned from the run before it
        config = json.loads((Path(after["run"]) / "summary.json").read_text())
        assert config["teacher_weights"].startswith(str(Path(before["run"]).resolve()))
    assert steps[-1]["test_acc"] > 0.3, steps  # the last student learned (chance: 0.1), whatever its teachers' budget
