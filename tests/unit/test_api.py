"""distill.api from a notebook's point of view: configs checked as the CLI checks them, runs that
describe themselves as CLI runs do, and the objects a notebook has (a network class, a dataset)."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml
from torch import nn

from distill import api
from distill.data import given
from distill.data.base import make_splits
from distill.engine.runs import RunDir
from distill.errors import UserError
from tests.conftest import FAST, FLOAT32_TEACHER, read_summary, run_cli


class TinyNet(nn.Module):
    """A linear classifier, built for the dataset's classes, channels and image size."""

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size[0] * image_size[1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tiny_data(seed: int = 0):
    """60 8x8 grey images of 3 classes (brightness tells them apart)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(60) % 3
    x = (torch.rand(60, 1, 8, 8, generator=g) * 60 + y.view(-1, 1, 1, 1) * 60).to(torch.uint8)
    return make_splits("tiny", x[:48], y[:48], x[48:], y[48:], ["a", "b", "c"], "none", 0.25, 0)


@pytest.mark.parametrize(
    "overrides",
    [["distill.temperature=-1"], ["dataset=digts"], ["distill.temprature=2"]],
    ids=["range", "option", "key"],
)
def test_compose_refuses_what_the_cli_refuses_with_its_line(tmp_path, overrides):
    cli = run_cli("train", *overrides, cwd=tmp_path)
    assert cli.returncode == 2
    with pytest.raises(UserError) as refused:
        api.compose("train", overrides)
    assert cli.stderr.strip() == f"distill train: error: {refused.value}"


def test_a_python_run_describes_itself_and_takes_a_network_class_and_data(tmp_path):
    data = tiny_data()
    root = tmp_path / "outputs"
    handlers = list(logging.getLogger().handlers)
    summary = api.run(
        "train",
        ["trainer.epochs=1", *FLOAT32_TEACHER, *FAST, f"paths.root={root}", f"paths.output_dir={tmp_path / 'run'}"],
        student=TinyNet,
        teacher=TinyNet,
        dataset=data,
    )
    run = RunDir(tmp_path / "run")
    assert read_summary(run.path) == summary and summary["dataset"] == "tiny"
    assert summary["student"] == summary["teacher"] == f"{__name__}.TinyNet"
    assert summary["dataset_key"]["fingerprint"] == given.fingerprint(data)
    # as from the CLI: Hydra's record of the run (what resume replays) and the run's log file
    replayed = yaml.safe_load((run.path / ".hydra" / "overrides.yaml").read_text())
    assert f"student._target_={__name__}.TinyNet" in replayed and "dataset=python" in replayed
    assert "epoch 1/1" in (run.path / "train.log").read_text()
    assert logging.getLogger().handlers == handlers, "the run's log file is not left attached"
    teachers = list((root / "teacher").glob("*/*/summary.json"))
    assert len(teachers) == 1  # trained first, on the given data

    other = tiny_data(seed=1)  # other data: that teacher is not reused
    api.run(
        "train", ["trainer.epochs=1", *FLOAT32_TEACHER, *FAST, f"paths.root={root}"], student=TinyNet, teacher=TinyNet,
        dataset=other,
    )  # fmt: skip
    assert len(list((root / "teacher").glob("*/*/summary.json"))) == 2
    assert len(list((root / "train").glob("*/*/.hydra/config.yaml"))) == 1  # its own dated folder, as on the CLI

    # a resumed run needs its own data again
    run.summary.unlink()
    with pytest.raises(UserError, match="not the data this run was started with"):
        api.run("train", [f"resume={run.path}"], student=TinyNet, teacher=TinyNet, dataset=other)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"student": lambda num_classes: TinyNet(num_classes, 1, (8, 8))}, "cannot be found again by a name"),
        ({"student": TinyNet(3, 1, (8, 8))}, "not a built TinyNet"),
        ({"dataset": object()}, "has no train_x, train_y"),
        (
            {"dataset": make_splits("f", *[torch.zeros(4, 1, 2, 2), torch.zeros(4)] * 2, ["a"], "none", 0.5, 0)},
            "train_x must be uint8 images",
        ),  # fmt: skip
    ],
    ids=["lambda", "instance", "not-splits", "float-images"],
)
def test_objects_a_run_cannot_use_are_refused_in_one_line(kwargs, needle):
    with pytest.raises(UserError, match=needle):
        api.run("train", ["trainer.epochs=1"], **kwargs)


def test_an_object_and_an_override_for_the_same_thing_are_refused():
    with pytest.raises(UserError, match="student is given twice"):
        api.run("train", ["student=lenet5"], student=TinyNet)
