"""A user's own networks through ``_target_``, from a package outside distill, as student and teacher;
a weights file naming such code is loaded only when the user names it again or trusts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import distill
from distill import api
from distill.errors import UserError
from tests.conftest import FAST, read_summary

NETS = '''
import torch
from torch import nn


def make_net(num_classes, in_channels, width=8):
    """The student: takes the dataset's classes and channels."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )


class BigNet(nn.Module):
    """The teacher: an RGB network with a 1000-class head, as pretrained networks come."""

    def __init__(self, hidden=32):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.head = nn.Linear(16 * hidden, 1000)

    def forward(self, x):
        return self.head(self.body(x))
'''
STUDENT = "usermodels_kd.nets.make_net"
TEACHER = "usermodels_kd.nets.BigNet"
# precision and teacher backend explicit: the same numbers on AVX2-only and AVX-512/bf16 CPUs
DATA = [
    "dataset=digits",
    "trainer.epochs=5",
    "optim.lr=0.1",
    "trainer.teacher_precision=32",
    "trainer.teacher_backend=torch",
    *FAST,
]


@pytest.fixture(scope="module")
def user_package(tmp_path_factory) -> Path:
    """``usermodels_kd``: a package in a folder of its own, importable as a user's would be."""
    root = tmp_path_factory.mktemp("site")
    (root / "usermodels_kd").mkdir()
    (root / "usermodels_kd" / "__init__.py").write_text("")
    (root / "usermodels_kd" / "nets.py").write_text(textwrap.dedent(NETS))
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m.startswith("usermodels_kd")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def distilled(user_package, tmp_path_factory) -> Path:
    """A train run of the user's student from the user's teacher (trained first, by the auto-teacher)."""
    out = tmp_path_factory.mktemp("outputs")
    run = out / "train"
    api.run(
        "train",
        [
            "student=custom", f"student._target_={STUDENT}", "+student.kwargs.width=12",
            "teacher=custom", f"teacher._target_={TEACHER}", "+teacher.kwargs.hidden=16",
            *DATA, f"paths.root={out}", f"paths.output_dir={run}",
        ],
    )  # fmt: skip
    return run


def test_the_users_own_student_and_teacher_train_and_the_weights_file_records_them(distilled):
    summary = read_summary(distilled)
    assert summary["student"] == STUDENT and summary["teacher"] == TEACHER
    # both learned, in 5 epochs on digits (10 classes)
    assert summary["test_acc"] > 0.5 and summary["teacher_test_acc"] > 0.5
    from safetensors import safe_open

    with safe_open(distilled / "checkpoints" / "best.safetensors", "pt") as f:
        model = json.loads(f.metadata()["model"])
    assert model["name"] == STUDENT and model["kwargs"] == {"width": 12}
    teacher = Path(summary["teacher_weights"])
    with safe_open(teacher, "pt") as f:
        assert json.loads(f.metadata()["model"])["name"] == TEACHER
        # the 1000-class head was replaced for digits' 10, the RGB stem fed repeated grey
        assert f.get_tensor("net.head.weight").shape == (10, 16 * 16)


def test_a_file_naming_user_code_is_refused_unless_named_again_or_trusted(distilled):
    with pytest.raises(UserError, match=rf"built by {STUDENT}.*trust_code={STUDENT}.*trust_code=true"):
        api.run("eval", [f"run={distilled}"])
    with pytest.raises(UserError, match="trust_code"):
        distill.load(distilled)
    named = api.run("eval", [f"run={distilled}", f"trust_code={STUDENT}"])
    trusted = api.run("eval", [f"run={distilled}", "trust_code=true"])
    assert named["top1"] == trusted["top1"] == read_summary(distilled)["test_acc"]
    with pytest.raises(UserError, match="trust_code"):  # naming another target does not open this one
        api.run("eval", [f"run={distilled}", "trust_code=usermodels_kd.nets.other"])
    model = distill.load(distilled, trust_code=STUDENT)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_the_bare_export_of_a_user_network_names_its_call_and_loads_into_it(distilled, user_package):
    from usermodels_kd.nets import make_net

    api.run("export", [f"run={distilled}", f"trust_code={STUDENT}", "check_images=32"])
    meta = json.loads((distilled / "model.json").read_text())["bare_network"]
    assert meta["build"] == f"{STUDENT}(num_classes=10, in_channels=1, width=12)"
    net = make_net(num_classes=10, in_channels=1, width=12)
    net.load_state_dict(load_file(distilled / "model.safetensors"))  # as it is


def test_target_errors_are_one_line_before_anything_runs(user_package, tmp_path):
    out = [*DATA, f"paths.root={tmp_path}"]
    # the default student (mlp) has kwargs the user's callable does not take
    shipped = r"takes no argument hidden, dropout \(the kwargs of student=mlp\).*student=custom"
    with pytest.raises(UserError, match=shipped):
        api.run("train", [f"student._target_={STUDENT}", *out])
    with pytest.raises(UserError, match="cannot import usermodels_kd.nope.make_net: usermodels_kd has no nope"):
        api.run("train", ["student=custom", "student._target_=usermodels_kd.nope.make_net", *out])
    with pytest.raises(UserError, match="num_classes come from the dataset"):
        api.run("train", ["student=custom", f"student._target_={STUDENT}", "+student.kwargs.num_classes=3", *out])
    with pytest.raises(UserError, match="trust_code must be true, false, or the dotted path"):
        api.run("eval", ["run=nowhere", "trust_code=[1]"])
    assert not list(tmp_path.rglob("*.safetensors"))


def test_on_the_command_line_a_refused_file_is_one_line_and_exit_code_2(distilled, user_package):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(user_package), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "distill", "eval", f"run={distilled}"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "trust_code" in done.stderr


def test_resume_replays_the_users_target_only_when_named_again(tmp_path):
    """A run folder cannot grant itself trust: its stored trust_code is dropped, and its stored _target_
    overrides are replayed only when the resume command names them (trust_code=...)."""
    import yaml

    from distill.config.resume import resume_args

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "state.pt").write_bytes(b"state")
    (run / "config.yaml").write_text("stage: train\n")
    stored = [
        "student=custom",
        f"student._target_={STUDENT}",
        "teacher.checkpoint=/x/evil.safetensors",
        "trust_code=true",
    ]
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(stored))
    with pytest.raises(UserError, match=rf"names code.*add trust_code={STUDENT} to name it again"):
        resume_args("train", [f"resume={run}"])
    with pytest.raises(UserError, match="names code"):  # naming another target opens nothing
        resume_args("train", [f"resume={run}", "trust_code=usermodels_kd.nets.BigNet"])
    args = resume_args("train", [f"resume={run}", f"trust_code={STUDENT}"])
    assert f"student._target_={STUDENT}" in args and f"trust_code={STUDENT}" in args
    assert "trust_code=true" not in args
