"""Batch-wise training augmentation on uint8 image tensors, a fresh draw for every image.

Working on whole in-memory batches (no per-image Python) keeps augmentation off the critical path
for the small datasets this tool is mostly run on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from distill.choices import AUGMENTS, MIXES  # noqa: F401 - the values of dataset.augment and trainer.mix


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


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, kind: str, alpha: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of a float batch with a shuffled copy.

    One ``lam ~ Beta(alpha, alpha)`` per batch, drawn from ``seed`` (so teacher and student, and a
    rerun, see the same mixed images). CutMix pastes a box of area ``1 - lam`` and sets ``lam`` to
    the area really kept.

    Returns:
        The mixed images, soft targets ``lam * onehot(y) + (1 - lam) * onehot(y[perm])`` and the
        hard labels of the larger share (for accuracy and for methods that need a class index).
    """
    rng = np.random.default_rng(seed)
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(y))).to(x.device)
    if kind == "mixup":
        x = lam * x + (1 - lam) * x[perm]
    elif kind == "cutmix":
        h, w = x.shape[-2:]
        ch, cw = int(round(h * np.sqrt(1 - lam))), int(round(w * np.sqrt(1 - lam)))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + (ch + 1) // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + (cw + 1) // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    else:
        raise ValueError(f"mix must be one of {MIXES}, got {kind!r}")
    onehot = F.one_hot(y, num_classes).float()
    soft = lam * onehot + (1 - lam) * onehot[perm]
    hard = y if lam >= 0.5 else y[perm]
    return x, soft, hard
