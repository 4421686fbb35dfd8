"""timm's pretrained weights (``teacher.pretrained=true``, ``hf-hub:`` names), read from a Hugging Face
cache the tests write by hand, offline: loaded, recorded by the plain name, and missing files named."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from distill.config.adapters import model_key, model_spec, model_weights
from distill.engine.checkpoint import load_model, save_weights
from distill.errors import UserError
from distill.models.spec import build_from_spec, spec_problem
from distill.models.timm_models import node_problems, timm_net, timm_record
from tests.conftest import read_summary, run_cli

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread, no stall when the cores are busy
ONE_THREAD = ["trainer.threads=1", "trainer.progress=off"]

NAME = "test_resnet.r160_in1k"  # a tiny timm test network (373k parameters) with a pretrained tag
REPO = f"timm/{NAME}"  # the hub repo timm loads its weights from
HUB = f"hf-hub:{REPO}"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline: what HF_HUB_CACHE=... HF_HUB_OFFLINE=1 set at start-up do
    (huggingface_hub reads the variables when imported, so its constants are set here)."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def publish(cache: Path) -> dict[str, torch.Tensor]:
    """Writes repo REPO into the cache as `hf download` leaves it (refs/main naming a snapshot that holds
    config.json and model.safetensors) with the weights of a random network; returns those weights."""
    torch.manual_seed(0)
    net = timm.create_model(NAME)  # 1000 classes, 3 channels
    folder = cache / f"models--{REPO.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    timm.models.save_for_hf(net, folder / "snapshots" / commit, safe_serialization=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return {k: v.clone() for k, v in net.state_dict().items()}


def node(name: str, pretrained: bool = False) -> dict:
    return {"name": name, "source": "timm", "kwargs": {}, "pretrained": pretrained, "weights": None}


GREY_DIGITS = SimpleNamespace(
    num_classes=10, in_channels=1, image_size=(8, 8), mean=(0.3,), std=(0.4,), classes=[str(i) for i in range(10)]
)


@pytest.mark.parametrize("name, pretrained", [(NAME, True), (HUB, False)])
def test_pretrained_weights_are_timms_own_read_from_the_local_cache(hub_cache, name, pretrained) -> None:
    written = publish(hub_cache)
    plain, kwargs, weights = timm_record(name, {}, pretrained)
    assert plain == NAME and weights == f"pretrained:{name}"  # recorded by the plain name; hf-hub implies pretrained
    same, _ = timm_net(plain, 1000, 3, (32, 32), weights, kwargs)
    for key, value in written.items():
        assert torch.equal(same.state_dict()[key], value), key
    # 10 grey classes: timm replaces the head and sums the stem's RGB filters; the rest is as written
    grey, _ = timm_net(plain, 10, 1, (8, 8), weights, kwargs)
    got = grey.state_dict()
    stem = f"{grey.pretrained_cfg['first_conv']}.weight"
    assert torch.allclose(got[stem], written[stem].sum(1, keepdim=True))
    assert got["fc.weight"].shape == (10, written["fc.weight"].shape[1])
    for key, value in written.items():
        if key not in (stem, "fc.weight", "fc.bias"):
            assert torch.equal(got[key], value), key


def test_a_weights_file_records_the_plain_name_and_loads_without_the_hub(hub_cache, tmp_path) -> None:
    written = publish(hub_cache)
    spec = model_spec(node(HUB), GREY_DIGITS)
    assert spec.name == f"timm/{NAME}" and spec_problem(spec) is None  # no hf-hub: in what a file says
    model = build_from_spec(spec, weights=model_weights(node(HUB)))
    assert torch.equal(model.net.layer1[0].conv1.weight, written["layer1.0.conv1.weight"])
    path = save_weights(tmp_path / "best.safetensors", model, spec)
    for cached in hub_cache.iterdir():  # the cache is gone: rebuilding from the file fetches nothing
        cached.rename(tmp_path / cached.name)
    loaded, loaded_spec, _, _ = load_model(path)
    assert loaded_spec.name == f"timm/{NAME}"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # a pretrained model and a random one of the same name are different recipes
    assert model_key(node(NAME, pretrained=True)) != model_key(node(NAME))
    assert model_weights(node(NAME)) is None


def test_missing_pretrained_weights_are_one_line_naming_the_file_and_the_download(hub_cache) -> None:
    folder = hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / "<commit>"
    with pytest.raises(UserError) as raised:
        timm_net(NAME, 10, 1, (8, 8), f"pretrained:{NAME}")
    line = str(raised.value)
    assert "\n" not in line and str(folder / "model.safetensors") in line, line
    assert f"hf download {REPO}" in line and "HF_HUB_OFFLINE=1" in line, line
    # an hf-hub name needs its config.json too; the train checks say it before anything runs
    (problem,) = node_problems("teacher", HUB, False, None)
    assert str(folder / "config.json") in problem and str(folder / "model.safetensors") in problem, problem
    (problem,) = node_problems("teacher", NAME, True, None)
    assert problem.startswith("teacher: timm model") and str(folder / "model.safetensors") in problem, problem


def test_the_cli_says_it_in_one_line_with_exit_code_2_and_starts_nothing(hub_cache, tmp_path) -> None:
    args = ["train", "dataset=digits", "student=lenet5", "teacher=timm", f"teacher.name={NAME}"]
    result = run_cli(*args, "teacher.pretrained=true", f"paths.root={tmp_path / 'outputs'}", *ONE_THREAD, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"hf download {REPO}" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "name, pretrained, weights, needle",
    [
        ("resnet18.nope", False, None, "timm has no weights 'nope' for resnet18"),
        ("beit3_giant_patch14_224", True, None, "timm has no pretrained weights for beit3_giant_patch14_224"),
        ("resnet18.a1_in1k", True, "/some/file.safetensors", "keep one"),
        ("resnet18.a1_in1k", "yes", None, "pretrained must be true or false"),
        ("hf-hub:resnet18", False, None, "a hub name is hf-hub:ORG/REPO"),
        ("resnet181", True, None, "is not a timm model"),
    ],
)
def test_timm_nodes_are_checked_before_anything_runs(hub_cache, name, pretrained, weights, needle) -> None:
    (problem,) = node_problems("teacher", name, pretrained, weights)
    assert needle in problem, problem


def test_names_without_pretrained_weights_to_load_need_no_cache(hub_cache) -> None:
    for name in ("resnet18.a1_in1k", "resnet18"):
        assert node_problems("student", name, False, None) == []
        assert timm_record(name, {"drop_rate": 0.1}, False) == (name, {"drop_rate": 0.1}, None)
    # a teacher given as teacher.checkpoint is read from that file: its pretrained weights are not needed
    assert node_problems("teacher", NAME, True, None, builds=False) == []
    assert node_problems("teacher", HUB, False, None, builds=False) == []


def test_a_pretrained_timm_teacher_is_fine_tuned_from_the_cached_weights(hub_cache, tmp_path) -> None:
    written = publish(hub_cache)
    out = tmp_path / "teacher"
    data = ["dataset=synthetic", "dataset.n_train=32", "dataset.n_eval=16", "dataset.size=8", "dataset.channels=1"]
    result = run_cli(
        "teacher", "teacher=timm", f"teacher.name={NAME}", "teacher.pretrained=true", *data, "trainer.epochs=1",
        "trainer.batch_size=16", "optim.lr=1e-12", *ONE_THREAD, f"hydra.run.dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(out)
    assert summary["model"] == f"timm/{NAME}" and summary["model_key"]["weights"] == f"pretrained:{NAME}"
    model, spec, _, _ = load_model(out)
    assert spec.name == f"timm/{NAME}"
    # lr 1e-12: one epoch leaves the weights as timm loaded them from the cache (BatchNorm statistics move)
    got = model.net.state_dict()
    for key in ("layer1.0.conv1.weight", "layer2.0.conv2.weight"):
        assert torch.allclose(got[key], written[key], atol=1e-6), key
