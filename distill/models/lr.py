"""The learning rate ``optim.lr=auto`` picks: one rate per model family, scaled with the batch.

One rate of 0.01 for every student left them under-trained, so each family starts from the rate that
trained it well in ``distill``'s default recipe (SGD, momentum 0.9, cosine decay over 30 epochs, batch
64, ``trainer.grad_clip`` 1), measured alone on mnist5k (seed 0, val-selected epoch, AMD EPYC):
2x800 mlp 0.9640 at 0.01 -> 0.9720 at 0.05 without the limit, 0.9690 with it (3 seeds; at 0.1 KD
collapsed without a limit),
mobilenet_v3_small 0.967 at 0.01 -> 0.978 at 0.1, lenet5 0.957 at 0.01 -> 0.970 at 0.1. The rate
scales linearly with the batch size (Goyal et al. 2017, "Accurate, Large Minibatch SGD"),
``lr = base * batch_size / 64``, and a model that starts from pretrained weights is fine-tuned at a
tenth of its family's rate.

timm and Hugging Face models match by the last part of their name (timm/resnet50 is a resnet); a
name that matches no family (``regnet_y_400mf``, your own ``_target_``) takes :data:`DEFAULT_LR`.
``optim.lr`` set to a number is always used as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AUTO = "auto"
BASE_BATCH = 64
DEFAULT_LR = 0.05
PRETRAINED_FACTOR = 0.1

# (name prefix, base rate at batch 64). The first matching prefix wins.
FAMILY_LR: tuple[tuple[str, float], ...] = (
    ("mlp", 0.05),  # Hinton's 2x800 MLP on mnist5k: 0.01 left it under-trained in 30 cosine epochs
    ("lenet", 0.1),
    ("vit", 0.01),  # the former default for every student, kept: not measured higher for ViTs under SGD
    ("mobilenet", 0.1),
    ("resnet", 0.1),  # as mobilenet (BatchNorm convnets; torchvision's recipes use 0.1 at batch 256 and up)
    ("wrn", 0.05),  # the CIFAR-KD zoo's own recipe (Tian et al. 2020): SGD 0.05 at batch 64
    ("vgg", 0.05),
)


def family_lr(name: str) -> float:
    """The base rate (batch 64, from scratch) of the family ``name`` belongs to."""
    return next((lr for prefix, lr in FAMILY_LR if name.startswith(prefix)), DEFAULT_LR)


def pretrained(model: Mapping[str, Any]) -> bool:
    """Whether the model config starts from pretrained weights (torchvision weights, timm's, HF's)."""
    return bool(model.get("weights") or model.get("pretrained"))


def auto_lr(model: Mapping[str, Any], batch_size: int) -> tuple[float, str]:
    """The rate ``optim.lr=auto`` gives ``model`` (its config: name, weights, ...) at ``batch_size``,
    and how it was found, for the log."""
    name = str(model.get("name", ""))
    # timm and Hugging Face models share their families' rates (timm's resnet50 is a resnet)
    base = family_lr(name.rsplit("/", 1)[-1].lower())
    lr = base * batch_size / BASE_BATCH
    how = f"{base:g} for {name} at batch {BASE_BATCH}"
    if batch_size != BASE_BATCH:
        how += f", x {batch_size}/{BASE_BATCH} for batch {batch_size}"
    if pretrained(model):
        lr *= PRETRAINED_FACTOR
        how += f", x {PRETRAINED_FACTOR:g} to fine-tune pretrained weights"
    return float(f"{lr:.6g}"), how
