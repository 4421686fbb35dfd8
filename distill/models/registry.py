"""Build any model of the registry for a dataset: torchvision classifiers by name plus our own zoo.

A model is always wrapped in :class:`Classifier`, which takes float images in [0, 1] (NCHW),
normalises them with the training set's statistics, repeats a grey channel for RGB networks and
upsamples images smaller than the network's minimum input size. So a user never has to think
about channels, sizes or normalisation, and the exported ONNX graph carries all of it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import UserError, closest
from distill.models import cifar, small, user, vit
from distill.models.names import torchvision_names

# Our own architectures: name -> (constructor, input size it is built for, or None for native).
# The constructors take num_classes and in_channels (those built at native size also image_size).
ZOO: dict[str, tuple[Callable[..., nn.Module], int | None]] = {
    "resnet8x4": (cifar.resnet8x4, 32),
    "resnet32x4": (cifar.resnet32x4, 32),
    "wrn_16_2": (cifar.wrn_16_2, 32),
    "wrn_40_2": (cifar.wrn_40_2, 32),
    "vgg8": (cifar.vgg8, 32),
    "vgg13": (cifar.vgg13, 32),
    "mlp": (small.mlp, None),
    "lenet5": (small.lenet5, 32),
    "vit_tiny": (vit.vit_tiny, None),
}

# timm models are named "timm/<timm name>" (conf/models.yaml, timm: teacher=timm teacher.name=...).
TIMM_PREFIX = "timm/"
# Hugging Face classifiers are named "hf/<hub id or folder>" (conf/models.yaml, hf: teacher=hf teacher.name=...).
HF_PREFIX = "hf/"

# torchvision networks work from 32 px up unless their weights' metadata asks for more
# (alexnet 63, inception_v3 75); vision transformers want exactly the size they were built for.
_MIN_SIDE = 32
_EXACT_SIZE_PREFIXES = ("vit_", "swin_", "maxvit_")


def torchvision_models() -> list[str]:
    """Every torchvision classification model name (kept between runs: :mod:`distill.models.names`)."""
    return torchvision_names()


def available_models() -> list[str]:
    return sorted(set(ZOO) | set(torchvision_models()))


class Classifier(nn.Module):
    """Normalisation and input adaptation in front of a classification network.

    Args:
        net: the network proper; takes ``net_channels`` x ``net_size`` inputs.
        mean, std: per-channel statistics of the dataset's [0, 1] images.
        net_channels: channels the network expects; a 1-channel input is repeated to match.
        net_size: (H, W) to resize inputs to, or None to feed them as they are.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        net_channels: int,
        net_size: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        self.net = net
        self.net_channels = net_channels
        self.net_size = net_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if x.shape[1] != self.net_channels:
            x = x.expand(-1, self.net_channels, -1, -1)
        if self.net_size is not None and tuple(x.shape[-2:]) != self.net_size:
            x = F.interpolate(x, size=self.net_size, mode="bilinear", align_corners=False)
        out = self.net(x)
        return out if isinstance(out, torch.Tensor) else out.logits  # Hugging Face models return an output object


def weights_categories(name: str, weights: str) -> list[str] | None:
    """The class names of torchvision's ``weights`` (an enum name or ``DEFAULT``) of model ``name``, or
    None when the model or its weights are not torchvision's."""
    import torchvision  # here: importing it takes seconds (torch._dynamo), and most commands need none

    try:
        enum = torchvision.models.get_model_weights(name)
        return (enum.DEFAULT if weights == "DEFAULT" else enum[weights]).meta.get("categories")
    except (ValueError, KeyError, AttributeError):
        return None


@functools.cache
def imagenet_wnids() -> list[str]:
    """ImageNet-1k's WordNet ids in class-index order (an ImageNet folder's class names, sorted)."""
    return (Path(__file__).with_name("imagenet_wnids.txt")).read_text().split()


def pretrained_rows(categories: list[str] | None, classes: list[str] | None) -> list[int] | None:
    """The outputs of a 1000-class ImageNet checkpoint that are the dataset's ``classes``, in their
    order, when every class is an ImageNet class by WordNet id (n01440764) or by the checkpoint's
    category name (tench); else None."""
    if not categories or not classes or len(categories) != 1000:
        return None
    for names in (imagenet_wnids(), list(categories)):
        index = {name: i for i, name in enumerate(names)}
        if all(c in index for c in classes):
            return [index[c] for c in classes]
    return None


def _replace_head(net: nn.Module, num_classes: int, rows: list[int] | None = None, fresh: bool = False) -> None:
    """Swaps the last Linear layer of a pretrained network for one with num_classes outputs: fresh, or
    the old one's ``rows`` (the pretrained outputs that are the dataset's classes, kept as they are).
    A head that has num_classes outputs already is kept unless ``fresh`` (its outputs are other classes)."""
    linears = [(n, m) for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("cannot find a Linear classification head to resize for this dataset")
    name, old = linears[-1]
    if old.out_features == num_classes and rows is None and not fresh:
        return
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    if rows is not None:
        with torch.no_grad():
            new.weight.copy_(old.weight[rows])
            if old.bias is not None:
                new.bias.copy_(old.bias[rows])
    parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
    setattr(parent, name.rpartition(".")[2], new)


def _torchvision_net(
    name: str, num_classes: int, weights: str | None, side: int, kwargs: dict, classes: list[str] | None = None
) -> tuple:
    """Returns (net, input size) for a torchvision model."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        enum = None
    min_side = _MIN_SIDE
    if enum is not None:
        meta_min = list(enum)[0].meta.get("min_size", (1, 1))
        min_side = max(min_side, *meta_min)
    exact = name.startswith(_EXACT_SIZE_PREFIXES)
    if weights is not None:
        if enum is None or weights not in enum.__members__ and weights != "DEFAULT":
            choices = list(enum.__members__) if enum is not None else []
            raise UserError(
                f"model {name!r} has no weights {weights!r}{closest(weights, choices)}; "
                f"choose one of {choices or 'none'}"
            )
        try:
            net = torchvision.models.get_model(name, weights=weights, **kwargs)
        except (OSError, RuntimeError) as e:  # URLError is an OSError
            raise UserError(
                f"could not load {name} weights {weights} ({type(e).__name__}: {e}); without network, "
                f"place the file in {torch.hub.get_dir()}/checkpoints or use teacher.checkpoint=PATH"
            ) from e
        # an ImageNet checkpoint for a folder of ImageNet classes keeps those classes' outputs as they are
        _replace_head(net, num_classes, pretrained_rows(weights_categories(name, weights), classes))
        size = (min_side, min_side) if (exact or side < min_side) else None
        return net, size
    if exact:
        # Without weights a ViT can be built for any size: build it for the size it will see.
        kwargs = {"image_size": max(side, _MIN_SIDE), **kwargs}
        net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        return net, (kwargs["image_size"],) * 2
    net = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    return net, ((min_side, min_side) if side < min_side else None)


def build_model(
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    weights: str | None = None,
    kwargs: dict[str, Any] | None = None,
    classes: list[str] | None = None,
) -> Classifier:
    """Builds ``name`` for a dataset of ``num_classes`` classes and ``in_channels`` x ``image_size`` images.

    Args:
        name: a torchvision classification model name, one of :data:`ZOO`, ``timm/<name>``
            (needs the ``timm`` extra), or the dotted path of a user's callable (:mod:`distill.models.user`).
        weights: torchvision pretrained weights by enum name (e.g. ``IMAGENET1K_V2``), for timm
            models a local weights file or ``pretrained:<name>`` (timm's own, from the Hugging Face
            cache), for Hugging Face models ``pretrained``; the head is replaced to fit ``num_classes``.
        kwargs: extra constructor arguments (e.g. ``hidden`` for ``mlp``).
        classes: the dataset's class names: ImageNet classes (WordNet ids or category names) keep
            their rows of a torchvision ImageNet checkpoint's head instead of a fresh head.
    """
    kwargs = dict(kwargs or {})
    side = min(image_size)
    if name.startswith(HF_PREFIX):  # transformers' image classifiers; kwargs.config: the model's config, JSON
        from distill.models.hf_models import hf_net

        if weights not in (None, "pretrained") or "config" not in kwargs:
            raise UserError(f"{name}: weights must be pretrained or null, and kwargs.config the model's config")
        net, channels, size = hf_net(name[len(HF_PREFIX) :], kwargs["config"], weights == "pretrained", classes)
        return Classifier(net, mean, std, channels, None if size == tuple(image_size) else size)
    if user.is_target(name):  # the user's own callable (student._target_=mypkg.models.make_net)
        net, channels = user.build_user_net(name, num_classes, in_channels, tuple(image_size), kwargs)
        return Classifier(net, mean, std, channels, None)
    if name.startswith(TIMM_PREFIX):
        from distill.models.timm_models import timm_net

        net, size = timm_net(name[len(TIMM_PREFIX) :], num_classes, in_channels, tuple(image_size), weights, kwargs)
        if size is None and side < _MIN_SIDE:  # as for torchvision: tiny images are upsampled
            size = (_MIN_SIDE, _MIN_SIDE)
        return Classifier(net, mean, std, in_channels, size)
    # vgg13 is both ours (CIFAR-KD, with BatchNorm) and torchvision's: pretrained weights mean torchvision's.
    if name in ZOO and not (weights is not None and name in torchvision_models()):
        if weights is not None:
            raise UserError(f"model {name!r} has no pretrained weights; drop weights= or use checkpoint=")
        fn, size = ZOO[name]
        native = {"image_size": tuple(image_size)} if size is None else {}
        try:
            net = fn(num_classes=num_classes, in_channels=in_channels, **native, **kwargs)
        except (TypeError, ValueError) as e:  # an argument the constructor does not take, or a bad value
            raise UserError(f"bad model arguments for {name}: {e}") from None
        if size is None:
            return Classifier(net, mean, std, in_channels, None)
        return Classifier(net, mean, std, in_channels, (size, size) if tuple(image_size) != (size, size) else None)
    if name not in torchvision_models():
        raise UserError(
            f"unknown model {name!r}{closest(name, available_models())}; use a torchvision classification "
            f"model name (e.g. resnet18, mobilenet_v2) or one of: {', '.join(ZOO)}"
        )
    try:
        net, size = _torchvision_net(name, num_classes, weights, side, kwargs, classes)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad model arguments for {name}: {e}") from None
    return Classifier(net, mean, std, 3, size)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
