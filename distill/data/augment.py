"""Batch-wise training augmentation on uint8 image tensors, a fresh draw for every image.

Working on whole in-memory batches (no per-image Python) keeps augmentation off the critical path
for the small datasets this tool is mostly run on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTS = ("none", "shift", "crop_flip")


def random_translate(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shifts every image by its own random offset of up to ``pad`` pixels in each direction.

    The border is filled with zeros (the background of digits and MNIST; black for photos), as a
    padded random crop does.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(c)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirrors a random half of the images left to right."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    out = x.clone()
    out[flip] = x[flip].flip(-1)
    return out


def shift_pixels(side: int) -> int:
    """How far ``shift`` moves an image: 2 px for 28 px MNIST (Hinton's jitter), 1 px for 8 px digits."""
    return max(1, round(side / 14))


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Applies the named augmentation (see :data:`AUGMENTS`) to a uint8 NCHW batch."""
    if kind == "none":
        return x
    # shift: random translations of up to shift_pixels(side) px; crop_flip: 4 px padded crop + mirror.
    if kind == "shift":
        return random_translate(x, shift_pixels(x.shape[-1]), generator)
    if kind == "crop_flip":
        return random_hflip(random_translate(x, 4, generator), generator)
    raise ValueError(f"unknown augmentation {kind!r}; choose one of {AUGMENTS}")
