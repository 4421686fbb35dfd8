"""timm models, an optional extra: built for the dataset, local weights loaded, ImageNet ones adapted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from distill.errors import UserError
from distill.models.timm_models import timm_net


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
