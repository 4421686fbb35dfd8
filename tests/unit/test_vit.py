"""vit_tiny: built at the dataset's native size, trainable, and exported to ONNX with the same answers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.errors import UserError
from distill.export.onnx import check_onnx
from distill.models.vit import auto_patch_size, vit_tiny
from tests.conftest import vit_classifier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("side,channels,patch", [(8, 1, 2), (28, 1, 4), (32, 3, 4)])
def test_vit_tiny_builds_at_native_size_and_trains(side: int, channels: int, patch: int) -> None:
    model = vit_classifier(side, channels).train()
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
