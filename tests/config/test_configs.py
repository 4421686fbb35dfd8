"""Every shipped config composes, and every model and embedded dataset option instantiates."""

from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate

from distill import config_dir
from distill.config.adapters import model_spec
from distill.models.spec import build_from_spec
from distill.stage_names import STAGES

CONF = Path(config_dir())


def _options(group: str) -> list[str]:
    """A group's shipped options: its files, and for teacher/student the models of conf/models.yaml."""
    files = {p.stem for p in (CONF / group).glob("*.yaml")}
    models = set(yaml.safe_load((CONF / "models.yaml").read_text())) if group in ("teacher", "student") else set()
    return sorted(files | models)


@pytest.mark.parametrize("stage", list(STAGES))
def test_primary_config_composes(make_cfg, stage):
    extra = {"eval": ["run=x"], "export": ["run=x"], "report": ["dir=x"], "inspect": ["student=mlp"]}.get(stage, [])
    cfg = make_cfg(stage, extra)
    assert cfg.stage == stage


def test_each_shipped_model_is_one_entry_for_both_roles(make_cfg):
    """conf/models.yaml registers each model once: as a teacher it has checkpoint, else the same node."""
    assert len(_options("student")) >= 13 and not (CONF / "student").exists()
    for name in _options("student"):
        extra = [f"teacher.name={name}x", f"student.name={name}x"] if name == "timm" else []  # name: ??? there
        if name == "custom":  # _target_: ??? there
            extra = [f"{role}._target_=distill.models.cifar.resnet8x4" for role in ("teacher", "student")]
        if name == "hf":  # name: ??? there
            extra = [f"{role}.name=org/model" for role in ("teacher", "student")]
        cfg = make_cfg("train", [f"teacher={name}", f"student={name}", *extra])
        teacher = dict(cfg.teacher)
        assert teacher.pop("checkpoint") is None and teacher == dict(cfg.student), name


@pytest.mark.parametrize("name", _options("student"))
def test_every_student_option_builds_for_digits(make_cfg, name, tmp_path):
    extra = []
    if name == "timm":  # any timm model by name, with the optional extra
        pytest.importorskip("timm")
        extra = ["student.name=resnet18"]
    if name == "custom":  # the user's own callable, here one of distill's
        extra = ["student._target_=distill.models.cifar.resnet8x4"]
    if name == "hf":  # a Hugging Face classifier: a tiny random one saved with save_pretrained
        transformers = pytest.importorskip("transformers")
        config = transformers.ViTConfig(
            image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
        transformers.AutoModelForImageClassification.from_config(config).save_pretrained(tmp_path / "vit")
        extra = [f"student.name={tmp_path / 'vit'}", "student.weights=null"]
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


@pytest.mark.parametrize(
    ("method", "given", "said"),
    [
        ("dkd", ["distill.temperature=8"], True),  # alpha 0: DKD softens with its own T
        ("dkd", ["distill.temperature=8", "distill.alpha=0.5"], False),  # the logit term reads it
        ("dkd", ["distill.method.temperature=8"], False),  # the right key
        ("kd", ["distill.temperature=8"], False),  # plain KD has one temperature
        ("dist", [], False),  # nothing given: nothing to say
    ],
)
def test_a_temperature_that_changes_nothing_is_said(make_cfg, method, given, said):
    """The rule of the two temperatures: distill.temperature is the logit-KD term's, a method's own is
    distill.method.temperature; giving the first where only the second is read is named."""
    from distill.config.entry import API_OVERRIDES
    from distill.config.train_checks import unused_temperature

    cfg = make_cfg("train", [f"distill={method}", *given])
    token = API_OVERRIDES.set(tuple(given))
    try:
        note = unused_temperature(cfg)
    finally:
        API_OVERRIDES.reset(token)
    assert (note is not None) == said, note
    if said:
        assert "distill.method.temperature=4.0" in note and "DKD" in note


def test_the_typed_groups_refuse_a_wrong_type_when_composed(make_cfg):
    """trainer and cache start from their schemas (distill/config/schema.py): types hold at composition,
    and the API reports every wrong one together with the checks' problems."""
    from omegaconf.errors import ValidationError

    from distill import api
    from distill.errors import UserError

    with pytest.raises(Exception) as raised:
        make_cfg("train", ["trainer.threads=two"])
    assert isinstance(raised.value.__cause__, ValidationError), raised.value
    cfg = make_cfg("train", ["trainer.precision=32", "cache.max_gb=1"])
    assert cfg.trainer.precision == "32" and cfg.cache.max_gb == 1.0  # converted to the schema's types
    with pytest.raises(UserError) as raised:
        api.run("train", ["trainer.threads=two", "cache.views=many", "trainer.epochs=0"])
    assert str(raised.value) == (
        "trainer.threads must be a whole number, got 'two'; cache.views must be a whole number, got 'many'; "
        "trainer.epochs must be >= 1, got 0"
    )
