"""The model registry: adaptation to datasets, names, pretrained weights."""

import pytest
import torch

from distill.errors import UserError
from distill.models.registry import ZOO, build_model


@pytest.mark.parametrize(
    "name,size",
    [
        ("resnet18", (8, 8)),
        ("mobilenet_v3_small", (28, 28)),
        ("lenet5", (8, 8)),
        ("alexnet", (8, 8)),
        ("vgg8", (28, 28)),
    ],
)
def test_models_adapt_to_grey_small_images_and_class_count(name, size):
    model = build_model(name, 7, 1, size, (0.5,), (0.25,)).eval()
    assert model(torch.rand(3, 1, *size)).shape == (3, 7)


def test_vit_is_built_for_the_dataset_size():
    model = build_model("vit_b_32", 10, 3, (32, 32), (0.5,) * 3, (0.2,) * 3)
    assert model.net_size == (32, 32) and model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_model_names_the_closest():
    with pytest.raises(UserError, match="did you mean 'resnet152'"):
        build_model("resnet1522", 10, 3, (32, 32), (0.5,) * 3, (0.2,) * 3)


def test_missing_pretrained_weights_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="checkpoints"):
        build_model("resnet18", 10, 3, (32, 32), (0.5,) * 3, (0.2,) * 3, weights="IMAGENET1K_V1")
    with pytest.raises(UserError, match="no weights 'IMAGENET1K_V9'"):
        build_model("resnet18", 10, 3, (32, 32), (0.5,) * 3, (0.2,) * 3, weights="IMAGENET1K_V9")


def test_every_zoo_entry_builds():
    for name in ZOO:
        assert build_model(name, 10, 1, (32, 32), (0.5,), (0.2,))(torch.rand(1, 1, 32, 32)).shape == (1, 10)
