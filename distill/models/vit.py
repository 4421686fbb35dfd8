"""A small vision transformer built for the dataset's own image size.

:func:`vit_tiny` is torchvision's :class:`~torchvision.models.VisionTransformer` (Dosovitskiy et
al. 2021, "An Image is Worth 16x16 Words") with the widths of DeiT-Tiny (Touvron et al. 2021,
"Training data-efficient image transformers & distillation through attention": hidden 192,
3 heads, MLP 768) and half its depth, patchifying 8x8 digits, 28x28 MNIST or 32x32 CIFAR images
as they are instead of upsampling them to 224x224. The head is ``heads.head``.
"""

from __future__ import annotations

import math

from torch import nn

from distill.errors import UserError

# An automatic patch size cuts the image into at most this many patches per side (64 tokens).
_MAX_GRID = 8


def _divisors(side: int) -> list[int]:
    return [d for d in range(1, side + 1) if side % d == 0]


def auto_patch_size(side: int) -> int:
    """The smallest patch size of at least 2 that divides ``side`` into at most 8 patches per side.

    8 px gives 2 (a 4x4 grid), 28 px and 32 px give 4 (7x7 and 8x8), 64 px gives 8.

    Raises:
        UserError: when that leaves a single patch (e.g. a prime side such as 31).
    """
    patch = next(d for d in _divisors(side) if d >= 2 and side // d <= _MAX_GRID)
    if patch == side:
        choices = [d for d in _divisors(side) if d < side]
        raise UserError(
            f"vit_tiny cannot choose a patch size for {side}px images (the only divisors are {choices}); "
            f"set kwargs.patch_size to one of them, or resize the images"
        )
    return patch


def vit_tiny(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: tuple[int, int] = (32, 32),
    patch_size: int | None = None,
    num_layers: int = 6,
    num_heads: int = 3,
    hidden_dim: int = 192,
    mlp_dim: int = 768,
    dropout: float = 0.0,
    attention_dropout: float = 0.0,
) -> nn.Module:
    """A 6-layer ViT with DeiT-Tiny widths for square ``image_size`` inputs: 2,693,578 parameters on 32x32x3.

    Args:
        num_classes: outputs of the head ``heads.head`` (zero-initialised, as torchvision does).
        in_channels: channels of the input images; the patch projection takes them as they are.
        image_size: (H, W) of the inputs, which must be square; the network takes exactly this size.
        patch_size: side of a square patch, a divisor of the image side; None picks one with
            :func:`auto_patch_size` (2 for 8 px, 4 for 28 and 32 px).
        num_layers, num_heads, hidden_dim, mlp_dim: transformer depth, attention heads (dividing
            ``hidden_dim``), token width and MLP width.
        dropout, attention_dropout: dropout probabilities.

    Returns:
        A :class:`torchvision.models.VisionTransformer`.

    Raises:
        UserError: for non-square images, a patch size that does not divide the side, or heads
            that do not divide the width.
    """
    from torchvision.models import VisionTransformer  # here: importing torchvision takes seconds

    height, width = image_size
    if height != width:
        raise UserError(f"vit_tiny needs square images, got {height}x{width}")
    if patch_size is None:
        patch_size = auto_patch_size(height)
    elif not isinstance(patch_size, int) or patch_size < 1 or height % patch_size:
        raise UserError(
            f"vit_tiny patch_size={patch_size!r} must divide the image side {height}; choose one of {_divisors(height)}"
        )
    if hidden_dim % num_heads:
        raise UserError(f"vit_tiny num_heads={num_heads} must divide hidden_dim={hidden_dim}")
    net = VisionTransformer(
        image_size=height,
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        dropout=dropout,
        attention_dropout=attention_dropout,
        num_classes=num_classes,
    )
    if in_channels != 3:
        # torchvision's patch projection is built for RGB: rebuild it for the dataset's channels,
        # initialised as torchvision initialises its own (truncated normal, fan-in scaled).
        proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
        nn.init.trunc_normal_(proj.weight, std=math.sqrt(1 / (in_channels * patch_size**2)))
        nn.init.zeros_(proj.bias)
        net.conv_proj = proj
    return net
