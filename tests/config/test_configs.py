"""Every shipped config composes, and every model and embedded dataset option instantiates."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from distill import config_dir
from distill.config.adapters import model_spec
from distill.models.spec import build_from_spec
from distill.stage_names import STAGES

CONF = Path(config_dir())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("stage", list(STAGES))
def test_primary_config_composes(make_cfg, stage):
    extra = {"eval": ["run=x"], "export": ["run=x"], "report": ["dir=x"], "inspect": ["student=mlp"]}.get(stage, [])
    cfg = make_cfg(stage, extra)
    assert cfg.stage == stage


@pytest.mark.parametrize("name", _options("student"))
def test_every_student_option_builds_for_digits(make_cfg, name):
    extra = []
    if name == "timm":  # any timm model by name, with the optional extra
        pytest.importorskip("timm")
        extra = ["student.name=resnet18"]
    cfg = make_cfg("train", [f"student={name}", *extra])
    data = instantiate(cfg.dataset)
    model = build_from_spec(model_spec(cfg.student, data))
    out = model(data.test_x[:2].float() / 255)
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_embedded_datasets_instantiate(make_cfg, name):
    data = instantiate(make_cfg("train", [f"dataset={name}"]).dataset)
    assert data.num_classes == 10 and len(data.test_y) > 0


@pytest.mark.parametrize("name", ["resnet152", "efficientnet_b0", "vit_b_16", "alexnet", "inception_v3"])
def test_torchvision_names_are_config_options(make_cfg, name):
    cfg = make_cfg("train", [f"teacher={name}"])
    assert cfg.teacher.name == name and cfg.teacher.checkpoint is None


def test_sweep_dirs_carry_microseconds(make_cfg):
    text = (CONF / "hydra" / "default.yaml").read_text()
    assert "%f" in text and "chdir: false" in text
