"""Your own images in class folders: ``root/train/<class>/*``, ``root/val/<class>/*``, optional ``root/test``.

Every image is decoded once and resized to ``image_size`` x ``image_size``, so training runs from
one uint8 tensor in memory. Without ``test/``, the val split is also the test split (then
``test_acc`` is not independent of model selection: add a test folder for honest numbers).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from distill.data.base import make_splits
from distill.errors import UserError


def _read_split(
    folder: Path, classes: list[str] | None, image_size: int, channels: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets.folder import IMG_EXTENSIONS

    found = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if classes is not None:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise UserError(f"{folder} has class folders that train/ lacks: {', '.join(extra)}")
    classes = classes if classes is not None else found
    images, labels = [], []
    mode = "L" if channels == 1 else "RGB"
    for label, name in enumerate(classes):
        files = (
            sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMG_EXTENSIONS)
            if (folder / name).is_dir()
            else []
        )
        for path in files:
            try:
                with Image.open(path) as img:
                    img = img.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                    arr = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as e:
                raise UserError(f"cannot decode image {path}: {e}") from None
            images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise UserError(f"no images under {folder}/<class>/ (extensions: {', '.join(IMG_EXTENSIONS)})")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels), classes


def imagefolder(
    root: str,
    image_size: int = 32,
    channels: int = 3,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    augment: str = "crop_flip",
):
    """Reads an image-folder dataset into :class:`~distill.data.base.Splits` (class names = folder names)."""
    base = Path(root)
    if not (base / "train").is_dir() or not (base / "val").is_dir():
        raise UserError(
            f"dataset.root={root} must hold train/<class>/ and val/<class>/ folders (and optionally test/<class>/)"
        )
    if channels not in (1, 3):
        raise UserError(f"dataset.channels must be 1 or 3, got {channels}")
    tx, ty, classes = _read_split(base / "train", None, image_size, channels)
    vx, vy, _ = _read_split(base / "val", classes, image_size, channels)
    if (base / "test").is_dir():
        sx, sy, _ = _read_split(base / "test", classes, image_size, channels)
    else:
        sx, sy = vx, vy
    return make_splits(
        base.name or "imagefolder",
        tx,
        ty,
        sx,
        sy,
        classes,
        augment=augment,
        val_fraction=val_fraction,
        split_seed=split_seed,
        val_x=vx,
        val_y=vy,
    )
