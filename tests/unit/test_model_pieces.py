"""vit_tiny, the ONNX and logits-file teachers, and timm models as an optional extra."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file
from torch import nn

from distill.errors import UserError
from distill.export.onnx import check_onnx, export_onnx
from distill.models.logits_teacher import LogitsFileTeacher, write_logits_file
from distill.models.onnx_teacher import OnnxTeacher
from distill.models.registry import build_model
from distill.models.timm_models import timm_net
from distill.models.vit import auto_patch_size, vit_tiny

# A ViT small enough to export in a few seconds; the default one exports the same graph, only wider.
SMALL_VIT = {"num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is fastest, and does not stall when other work holds the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _vit(side: int, channels: int, **kwargs) -> nn.Module:
    model = build_model("vit_tiny", 10, channels, (side, side), (0.5,) * channels, (0.25,) * channels, kwargs=kwargs)
    nn.init.normal_(model.net.heads.head.weight, std=0.2)  # torchvision starts the head at zero: all logits 0
    return model


@pytest.fixture(scope="module")
def exported_vit(tmp_path_factory) -> tuple[nn.Module, Path]:
    """A small 28x28x1 vit_tiny in a Classifier, exported as distill export does, with its model.json."""
    torch.manual_seed(0)
    model = _vit(28, 1, **SMALL_VIT).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, torch.rand(2, 1, 28, 28), path)
    meta = {"classes": [f"c{i}" for i in range(10)], "input": {"channels": 1, "height": 28, "width": 28}}
    path.with_name("model.json").write_text(json.dumps(meta))
    return model, path


def _linear_onnx(path: Path, batch: int | str, chw: tuple, k: int = 3) -> np.ndarray:
    """Writes a foreign ONNX graph, logits = flatten(x) @ W, with the given batch and C, H, W dims; returns W."""
    w = np.random.default_rng(0).standard_normal((12, k)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *chw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, k])
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])]
    graph = helper.make_graph(nodes, "linear", [x], [y], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return w


# --- vit_tiny -------------------------------------------------------------------------------------


@pytest.mark.parametrize("side,channels,patch", [(8, 1, 2), (28, 1, 4), (32, 3, 4)])
def test_vit_tiny_builds_at_native_size_and_trains(side: int, channels: int, patch: int) -> None:
    model = _vit(side, channels).train()
    assert model.net.patch_size == patch and model.net.image_size == side and model.net_size is None
    assert model.net.conv_proj.in_channels == channels
    out = model(torch.rand(2, channels, side, side))
    assert out.shape == (2, 10)
    nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.net.conv_proj.weight.grad.abs().sum() > 0


def test_vit_tiny_kwargs_and_errors() -> None:
    net = vit_tiny(num_classes=5, in_channels=1, image_size=(28, 28), patch_size=7, num_layers=1)
    assert net.patch_size == 7 and len(net.encoder.layers) == 1 and net.heads.head.out_features == 5
    assert [auto_patch_size(s) for s in (8, 28, 32, 64)] == [2, 4, 4, 8]
    with pytest.raises(UserError, match="must divide the image side 28"):
        vit_tiny(image_size=(28, 28), patch_size=5)
    with pytest.raises(UserError, match="square"):
        vit_tiny(image_size=(28, 32))
    with pytest.raises(UserError, match="patch_size"):
        vit_tiny(image_size=(31, 31))


def test_vit_tiny_onnx_matches_pytorch(exported_vit) -> None:
    model, path = exported_vit
    assert check_onnx(model, path, torch.rand(5, 1, 28, 28)) < 1e-4


# --- OnnxTeacher ----------------------------------------------------------------------------------


def test_onnx_teacher_gives_pytorch_logits(exported_vit) -> None:
    model, path = exported_vit
    teacher = OnnxTeacher(path, threads=1)
    assert teacher.classes == [f"c{i}" for i in range(10)]
    assert teacher.num_classes == 10 and teacher.input_shape == (1, 28, 28)
    assert list(teacher.parameters()) == [] and teacher.requires_grad_(False).eval() is teacher
    teacher.check_input(1, 28, 28)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64).transpose(2, 3)  # float64, not contiguous
    got = teacher(x)
    with torch.no_grad():
        want = model(x.float())
    assert got.dtype == torch.float32 and got.device == x.device and got.shape == (3, 10)
    assert (got - want).abs().max() < 1e-4


def test_onnx_teacher_refuses_mismatched_input(exported_vit) -> None:
    teacher = OnnxTeacher(exported_vit[1], threads=1)
    with pytest.raises(UserError, match=r"takes 1x28x28 .* dataset has 3x32x32"):
        teacher.check_input(3, 32, 32)


def test_onnx_teacher_refuses_what_is_not_an_onnx_model(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        OnnxTeacher(tmp_path / "missing.onnx")
    bad = tmp_path / "teacher.onnx"
    bad.write_text("not a model\n")
    with pytest.raises(UserError, match="not a valid ONNX model"):
        OnnxTeacher(bad)


def test_onnx_teacher_json_must_agree_with_graph(tmp_path: Path) -> None:
    path = tmp_path / "t.onnx"
    _linear_onnx(path, "batch", (3, 2, 2))
    path.with_suffix(".json").write_text(json.dumps({"classes": ["a", "b"], "input": {"channels": 1}}))
    with pytest.raises(UserError, match=r"channels 1 in the JSON but 3 in the graph; 2 classes in the JSON"):
        OnnxTeacher(path)


def test_onnx_teacher_without_json_reads_the_graph_and_splits_fixed_batches(tmp_path: Path) -> None:
    path = tmp_path / "fixed.onnx"
    w = _linear_onnx(path, 2, (3, 2, 2))
    teacher = OnnxTeacher(path, threads=1)
    assert teacher.classes is None and teacher.num_classes == 3 and teacher.input_shape == (3, 2, 2)
    x = torch.rand(5, 3, 2, 2)  # 5 images through a graph that takes exactly 2
    assert np.allclose(teacher(x).numpy(), x.flatten(1).numpy() @ w, atol=1e-5)

    free = tmp_path / "free.onnx"
    _linear_onnx(free, "n", ("c", "h", "w"))
    teacher = OnnxTeacher(free, threads=1)
    assert teacher.input_shape == (None, None, None) and teacher.num_classes == 3
    teacher.check_input(3, 2, 2)  # free dimensions take anything


# --- LogitsFileTeacher ----------------------------------------------------------------------------


def test_logits_file_round_trip(tmp_path: Path) -> None:
    logits = torch.randn(6, 3)
    path = write_logits_file(tmp_path / "sub" / "teacher.safetensors", logits, ["a", "b", "c"])
    teacher = LogitsFileTeacher(path)
    assert teacher.classes == ["a", "b", "c"] and (teacher.num_samples, teacher.num_classes) == (6, 3)
    index = torch.tensor([4, 0, 4])
    assert torch.equal(teacher(index), logits[index])
    assert torch.equal(teacher(torch.tensor([[1, 2]])), logits[torch.tensor([[1, 2]])])
    assert teacher.state_dict() == {} and list(teacher.parameters()) == []
    teacher.check(6, ["a", "b", "c"])
    assert LogitsFileTeacher(write_logits_file(tmp_path / "bare.safetensors", logits)).classes is None


def test_logits_file_mismatches_are_user_errors(tmp_path: Path) -> None:
    teacher = LogitsFileTeacher(write_logits_file(tmp_path / "t.safetensors", torch.randn(4, 2), ["x", "y"]))
    with pytest.raises(UserError, match=r"4 rows but the training split has 5 images.*2 logits per image"):
        teacher.check(5, ["x", "y", "z"])
    with pytest.raises(UserError, match=r"position 1: 'y' vs 'z'"):
        teacher.check(4, ["x", "z"])
    with pytest.raises(UserError, match="does not exist"):
        LogitsFileTeacher(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="not a safetensors file"):
        LogitsFileTeacher(tmp_path / "junk.safetensors")
    save_file({"scores": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match=r"no tensor 'logits' \(it has \['scores'\]\)"):
        LogitsFileTeacher(tmp_path / "other.safetensors")
    save_file({"logits": torch.zeros(2, 2)}, str(tmp_path / "k.safetensors"), metadata={"classes": '["a"]'})
    with pytest.raises(UserError, match="names 1 classes but the logits have 2 columns"):
        LogitsFileTeacher(tmp_path / "k.safetensors")


# --- timm -----------------------------------------------------------------------------------------


def test_timm_net_builds_and_loads_local_weights(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    net, size = timm_net("resnet18", num_classes=10, in_channels=1, image_size=(28, 28))
    assert size is None and net.eval()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded, _ = timm_net("resnet18", 10, 1, (28, 28), checkpoint=str(path))
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_timm_net_adapts_an_imagenet_checkpoint_and_resizes_for_fixed_size_models(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    rgb = timm.create_model("resnet18", pretrained=False)  # 1000 classes, 3 channels
    path = tmp_path / "imagenet.pth"
    torch.save({"state_dict": rgb.state_dict()}, path)
    grey, _ = timm_net("resnet18", 10, 1, (28, 28), checkpoint=str(path))
    assert torch.allclose(grey.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(grey.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight) and grey.fc.out_features == 10
    vit = "test_vit" if "test_vit" in timm.list_models() else "vit_tiny_patch16_224"
    _, size = timm_net(vit, 10, 1, (28, 28))
    assert size == tuple(timm.create_model(vit).pretrained_cfg["input_size"][-2:])
    with pytest.raises(UserError, match="unknown timm model 'resnet181'"):
        timm_net("resnet181", 10, 1, (28, 28))


def test_timm_missing_is_a_user_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'distill\[timm\]'"):
        timm_net("resnet18", 10, 1, (28, 28))
