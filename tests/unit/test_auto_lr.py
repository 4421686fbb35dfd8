"""optim.lr=auto: each model family's measured rate, scaled with the batch, a tenth when pretrained."""

import pytest
import torch
from hydra.utils import instantiate

from distill import api
from distill.config.checks import resolve_lr
from distill.config.train_checks import validate
from distill.errors import UserError
from distill.models.lr import DEFAULT_LR, auto_lr, family_lr


@pytest.mark.parametrize(
    ("name", "lr"),
    [
        ("mlp", 0.05),
        ("lenet5", 0.1),
        ("mobilenet_v3_small", 0.1),
        ("resnet18", 0.1),
        ("timm/resnet50.a1_in1k", 0.1),
        ("vit_tiny", 0.01),
        ("wrn_16_2", 0.05),
        ("regnet_y_400mf", DEFAULT_LR),
    ],
)
def test_family_rates(name, lr):
    assert family_lr(name.rsplit("/", 1)[-1]) == lr
    assert auto_lr({"name": name}, 64)[0] == lr


def test_batch_and_pretrained_scaling():
    assert auto_lr({"name": "resnet18"}, 128)[0] == pytest.approx(0.2)
    lr, how = auto_lr({"name": "resnet18", "weights": "IMAGENET1K_V1"}, 32)
    assert lr == pytest.approx(0.005) and "pretrained" in how and "32/64" in how


def _optimizer(cfg, key="student"):
    optim, _ = resolve_lr(cfg.optim, cfg[key], int(cfg.trainer.batch_size))
    return instantiate(optim)(params=[torch.zeros(1, requires_grad=True)])


def test_the_trained_models_rate_is_used():
    cfg = api.compose("train", ["student=mobilenet_v3_small", "trainer.batch_size=32"])
    assert cfg.optim.lr == "auto" and _optimizer(cfg).param_groups[0]["lr"] == pytest.approx(0.05)
    assert _optimizer(api.compose("train", ["student=mlp", "optim.lr=0.003"])).param_groups[0]["lr"] == 0.003
    # the teacher stage states its own rate (conf/teacher.yaml); auto there follows the teacher's family
    assert _optimizer(api.compose("teacher", ["teacher=resnet18"]), "teacher").param_groups[0]["lr"] == 0.05
    cfg = api.compose("teacher", ["teacher=lenet5", "optim.lr=auto"])
    assert _optimizer(cfg, "teacher").param_groups[0]["lr"] == 0.1


def test_auto_refused_for_other_optimizers():
    with pytest.raises(UserError, match="lr=auto is measured for SGD only"):
        validate(api.compose("train", ["optim=adamw", "optim.lr=auto"]))


def test_a_run_trains_at_the_auto_rate_and_says_so(make_cfg, tmp_path):
    import json

    from distill.stages import train as train_stage
    from tests.conftest import ONE_EPOCH

    run = tmp_path / "run"
    cfg = make_cfg("train", ["student=mlp", "student.kwargs.hidden=[16]", "distill.alpha=0", *ONE_EPOCH], run_dir=run)
    summary = train_stage.run(cfg)
    assert summary["lr"] == 0.05 and summary["grad_clip"] == 1.0
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["lr"] == 0.05
