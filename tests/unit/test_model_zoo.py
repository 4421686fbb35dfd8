"""The model zoo's own constructors: shapes, sizes, heads and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.models import cifar, small

CIFAR = ["resnet8x4", "resnet32x4", "wrn_16_2", "wrn_40_2", "vgg8", "vgg13"]

# Millions of parameters for 100 classes, as published in CRD's (Tian et al. 2020) tables.
PUBLISHED_M = {
    "resnet8x4": 1.23,
    "resnet32x4": 7.43,
    "wrn_16_2": 0.70,
    "wrn_40_2": 2.26,
    "vgg8": 3.96,
    "vgg13": 9.46,
}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _head(model: nn.Module) -> nn.Linear:
    head = getattr(model, "classifier", None) or model.fc
    assert isinstance(head, nn.Linear)
    return head


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


@pytest.mark.parametrize("name", CIFAR)
@pytest.mark.parametrize("num_classes,in_channels", [(10, 3), (100, 1)])
def test_cifar_models_take_8_and_32_px(name: str, num_classes: int, in_channels: int) -> None:
    model = getattr(cifar, name)(num_classes=num_classes, in_channels=in_channels).eval()
    assert _head(model).out_features == num_classes
    with torch.no_grad():
        for side in (8, 32):
            assert model(torch.randn(2, in_channels, side, side)).shape == (2, num_classes)


@pytest.mark.parametrize("name", ["resnet8x4", "wrn_16_2", "vgg8"])
@pytest.mark.parametrize("num_classes,in_channels", [(100, 3), (10, 1)])
def test_small_cifar_models_take_64_px(name: str, num_classes: int, in_channels: int) -> None:
    model = getattr(cifar, name)(num_classes=num_classes, in_channels=in_channels).eval()
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, 64, 64)).shape == (2, num_classes)


@pytest.mark.parametrize("name", CIFAR)
def test_cifar_parameter_counts_match_crd(name: str) -> None:
    count = _params(getattr(cifar, name)(num_classes=100))
    assert count / 1e6 == pytest.approx(PUBLISHED_M[name], rel=0.10)


@pytest.mark.parametrize("name", CIFAR)
def test_cifar_backward_gives_finite_gradients_everywhere(name: str) -> None:
    model = getattr(cifar, name)(num_classes=10, in_channels=1).train()
    out = model(torch.randn(2, 1, 8, 8))
    nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


def test_cifar_init_is_standard() -> None:
    model = cifar.resnet8x4()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(bool((m.weight == 1).all() and (m.bias == 0).all()) for m in bns)
    conv = model.conv1
    # Kaiming normal, fan_out, ReLU: std = sqrt(2 / (out_channels * 3 * 3)).
    assert conv.weight.std().item() == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.25)


def test_hinton_mlp_has_the_papers_size() -> None:
    model = small.mlp(num_classes=10, in_channels=1, image_size=(28, 28), hidden=(800, 800))
    assert _params(model) == 784 * 800 + 800 + 800 * 800 + 800 + 800 * 10 + 10
    assert isinstance(model.fc, nn.Linear) and isinstance(model.features, nn.Sequential)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("num_classes,in_channels", [(10, 1), (100, 3)])
def test_mlp_sizes_and_dropout(num_classes: int, in_channels: int) -> None:
    plain = small.mlp(num_classes, in_channels, image_size=(8, 12), hidden=[16])
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    assert plain(torch.randn(2, in_channels, 8, 12)).shape == (2, num_classes)
    dropped = small.mlp(num_classes, in_channels, image_size=(8, 8), hidden=(32, 16), dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in dropped.modules()) == 2
    assert dropped(torch.randn(2, in_channels, 8, 8)).shape == (2, num_classes)


@pytest.mark.parametrize("num_classes,in_channels", [(10, 1), (10, 3), (100, 1), (100, 3)])
def test_lenet5_on_32_px(num_classes: int, in_channels: int) -> None:
    model = small.lenet5(num_classes=num_classes, in_channels=in_channels)
    assert model.fc.in_features == 84 and model.fc.out_features == num_classes
    out = model(torch.randn(2, in_channels, 32, 32))
    assert out.shape == (2, num_classes)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_lenet5_size_and_input_check() -> None:
    assert _params(small.lenet5()) == 61_706
    with pytest.raises(ValueError, match="32x32"):
        small.lenet5()(torch.randn(2, 1, 28, 28))
