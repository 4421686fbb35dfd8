"""Images read from their files when a batch needs them, for folders too large to hold decoded.

Decoding is PIL's (the library torchvision's ``ImageFolder`` uses), in the DataLoader's worker
processes, with one difference that matters for photographs: a JPEG much larger than the crop is
decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, PIL's ``draft``) when that still leaves at
least as many pixels as the crop is resized to. The recipes are the ones users expect:

* train: ``RandomResizedCrop(image_size)`` (scale 0.08-1, aspect 3/4-4/3) and a horizontal flip,
  optionally followed by RandAugment or TrivialAugment (``transforms.v2``);
* eval: ``Resize(image_size / 0.875)`` on the shorter side, then ``CenterCrop(image_size)``.

A training view is a pure function of ``(seed, view, index)``: the crop and the flip are drawn
from a generator seeded by those three numbers (and a policy's draws from torch's generator seeded
by them, inside ``fork_rng``), so any worker, process or later run regenerates exactly the view a
teacher cache holds or a resumed run was at, whatever the worker count or the order of the batches.
Images leave as uint8 CHW tensors; scaling and normalisation happen in the model, as for every
dataset (see :mod:`distill.data.base`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from distill.choices import IN_MEMORY, ON_BAD_IMAGE, POLICIES  # noqa: F401 - also read from here
from distill.errors import UserError, first_line

# The eval recipe's resize: the shorter side to image_size / CROP_FRACTION, then the central crop.
CROP_FRACTION = 0.875
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def crop_box(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a random resized crop, drawn as torchvision's
    ``RandomResizedCrop`` draws it (ten tries at a scale and an aspect ratio, else the central crop
    of the extreme ratio), but from ``rng`` instead of torch's global generator."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    ratio = width / height
    if ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif ratio > RATIO[1]:
        h, w = height, int(round(height * RATIO[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def eval_size(image_size: int) -> int:
    """The shorter side images are resized to before the central crop of the eval recipe."""
    return int(math.floor(image_size / CROP_FRACTION))


def eval_recipe(image_size: int, channels: int) -> dict:
    """The eval recipe as data (written into ``model.json`` at export): what to do to an image file so
    that an exported model sees the pixels distill measured it on, with PIL alone."""
    return {
        "decode": "PIL, converted to " + ("L" if channels == 1 else "RGB"),
        "jpeg_draft": "a JPEG whose stored shorter side is at least k x resize_shorter_side is decoded at 1/k scale, "
        "the largest such k of 2, 4, 8 (none below 2x): PIL Image.draft(mode, (ceil(width / k), ceil(height / k)))",
        "resize_shorter_side": eval_size(image_size),
        "resize_longer_side": "int(resize_shorter_side * longer / shorter), of the size the file stores",
        "interpolation": "bilinear (PIL Image.BILINEAR)",
        "center_crop": image_size,
        "crop_offsets": "of the resized image: top = round((resized height - center_crop) / 2), left = "
        "round((resized width - center_crop) / 2), Python's round (half to even)",
        "exif_orientation": "not applied (as torchvision's ImageFolder)",
        "to_input": "uint8 HWC -> float32 CHW / 255, batch first; the normalisation is inside the graph",
    }


class ImageFiles(Dataset):
    """``(image, label, index)`` of image files, decoded and transformed on demand.

    Args:
        files: the image files, in a fixed order (the index of each is its position here).
        labels: their class indices.
        image_size: the side of the square images produced.
        channels: 3 (RGB) or 1 (grey).
        train: the training recipe (random crops, flips, ``policy``) instead of the eval one.
        policy: ``none``, ``randaugment`` or ``trivialaugment`` after the crop and flip (train only).
        seed: with the view (:meth:`set_view`) and the index, what draws a training view.
    """

    def __init__(
        self,
        files: list[Path],
        labels: list[int],
        image_size: int,
        channels: int = 3,
        train: bool = False,
        policy: str = "none",
        seed: int = 0,
    ) -> None:
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        if policy not in POLICIES:
            raise UserError(f"dataset.policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.files = [str(f) for f in files]
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.image_size, self.channels, self.train = int(image_size), int(channels), bool(train)
        self.policy, self.seed, self.view = policy, int(seed), 0
        self._policy = None  # built in the process that uses it

    def __len__(self) -> int:
        return len(self.files)

    def set_view(self, view: int) -> None:
        """The training view to draw: the epoch, or the epoch's view of a teacher cache."""
        self.view = int(view)

    def _decode(
        self, index: int, need: Callable[[int, int], tuple[float, float]] | None = None, header_only: bool = False
    ):
        """The file's image and its stored (height, width). ``need(height, width)``: how many pixels
        (rows, columns) of the stored image the caller will use; a JPEG is then decoded at the smallest
        scale (1/2, 1/4, 1/8: libjpeg's DCT scaling, through PIL's ``draft``) that keeps them."""
        from PIL import Image, UnidentifiedImageError

        path = self.files[index]
        mode = "L" if self.channels == 1 else "RGB"
        try:
            with Image.open(path) as img:
                width, height = img.size
                if need is not None:
                    rows, cols = need(height, width)
                    k = 1
                    while k < 8 and height / (2 * k) >= rows and width / (2 * k) >= cols:
                        k *= 2
                    if k > 1:
                        img.draft(mode, (math.ceil(width / k), math.ceil(height / k)))
                if header_only:
                    return img, (height, width)
                img = img.convert(mode)  # decodes the whole file here: a truncated one fails now
        except UnidentifiedImageError:
            raise UserError(f"{path} is not an image PIL can read") from None
        except Exception as e:  # noqa: BLE001 - PIL's decoders raise OSError, ValueError, SyntaxError, ...
            raise UserError(f"cannot decode image {path}: {first_line(e)}") from None
        return img, (height, width)

    def check(self, index: int, decode: bool) -> None:
        """Raises the one-line UserError of :meth:`read` for a file PIL cannot identify (its header) or,
        with ``decode``, cannot decode (read whole at the smallest JPEG scale: every byte, few pixels)."""
        self._decode(index, (lambda h, w: (1, 1)) if decode else None, header_only=not decode)

    def read(self, index: int) -> torch.Tensor:
        """The file's pixels as a uint8 (channels, H, W) tensor, as stored."""
        return _tensor(self._decode(index)[0])

    def view_of(self, index: int, view: int | None = None) -> torch.Tensor:
        """Image ``index`` as the recipe makes it: training view ``view`` (default: the current one),
        or the eval crop (the shorter side resized to ``eval_size`` with PIL's bilinear filter, then the
        central square, as torchvision's ``Resize`` and ``CenterCrop`` do on a PIL image; a JPEG at least
        twice that size is first decoded at a reduced scale, PIL's ``draft``)."""
        from PIL import Image

        side = self.image_size
        if not self.train:
            short = eval_size(side)
            img, (height, width) = self._decode(index, lambda h, w: (short * h / min(h, w), short * w / min(h, w)))
            # sizes and offsets as torchvision's Resize(short) and CenterCrop(side) compute them
            rh, rw = (short, int(short * width / height)) if height <= width else (int(short * height / width), short)
            img = img.resize((rw, rh), Image.BILINEAR)
            top, left = int(round((rh - side) / 2.0)), int(round((rw - side) / 2.0))
            return _tensor(img.crop((left, top, left + side, top + side)))
        rng = np.random.default_rng([self.seed, self.view if view is None else int(view), int(index)])
        box: list[int] = []

        def need(height: int, width: int) -> tuple[float, float]:
            box.extend(crop_box(height, width, rng))  # drawn once, from the stored size
            return side * height / box[2], side * width / box[3]

        img, (height, width) = self._decode(index, need)
        top, left, h, w = box
        sy, sx = height / img.size[1], width / img.size[0]  # stored pixels per decoded pixel
        img = img.resize((side, side), Image.BILINEAR, box=(left / sx, top / sy, (left + w) / sx, (top + h) / sy))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        image = _tensor(img)
        if self.policy != "none":
            with torch.random.fork_rng(devices=[]):  # the CPU generator's state, restored; CUDA's untouched
                torch.default_generator.manual_seed(int(rng.integers(2**62)))
                image = self._augment_policy()(image)
        return image

    def _augment_policy(self):
        if self._policy is None:
            from torchvision.transforms import v2

            self._policy = v2.RandAugment() if self.policy == "randaugment" else v2.TrivialAugmentWide()
        return self._policy

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.view_of(index), self.labels[index], int(index)


def _tensor(img) -> torch.Tensor:
    """A PIL image as a uint8 (channels, H, W) tensor: one copy of the pixels, seen channels-first (the
    batch's stack makes it contiguous, as torchvision's PILToTensor leaves it to the collate)."""
    arr = torch.from_numpy(np.array(img, dtype=np.uint8))
    return arr[None] if arr.ndim == 2 else arr.permute(2, 0, 1)


# The augmentation name a streaming split carries (Splits.augment): its training recipe is drawn per
# file when a batch is read, not applied to decoded tensors (distill.data.augment).
STREAMED = "random_resized_crop"


class LazyImages:
    """A split of image files standing where an in-memory uint8 ``(N, C, S, S)`` tensor stands.

    Indexing (an int, a slice, a list or a tensor of indices) decodes those images with the eval
    recipe and stacks them, so code written for tensors (``x[:64]``, ``x[idx]``, ``len(x)``,
    ``x.shape``) works unchanged; :meth:`train_batch` gives training views instead. Nothing is
    decoded until asked for; the object pickles as its file list, for DataLoader workers.
    """

    dtype = torch.uint8

    def __init__(self, files: list[Path], labels: list[int], image_size: int, channels: int = 3, policy: str = "none"):
        self.eval_files = ImageFiles(files, labels, image_size, channels)
        self.train_files = ImageFiles(files, labels, image_size, channels, train=True, policy=policy)

    def __len__(self) -> int:
        return len(self.eval_files)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        side = self.eval_files.image_size
        return len(self), self.eval_files.channels, side, side

    def _indices(self, key) -> list[int]:
        """Positions as a tensor's indexing reads ``key``: an int, a slice, or a list, array or tensor of
        ints (negative ones from the end) or of booleans (a mask)."""
        if isinstance(key, numbers.Integral):
            return [int(key) % len(self)]
        if isinstance(key, slice):
            return list(range(len(self)))[key]
        key = torch.as_tensor(np.asarray(key.cpu() if isinstance(key, torch.Tensor) else key))
        if key.dtype == torch.bool:
            if key.shape != (len(self),):
                raise IndexError(f"a mask of shape {tuple(key.shape)} for {len(self)} images")
            key = key.nonzero().flatten()
        return [int(i) % len(self) for i in key.flatten().tolist()]

    def __getitem__(self, key) -> torch.Tensor:
        images = [self.eval_files.view_of(i) for i in self._indices(key)]
        if isinstance(key, numbers.Integral):
            return images[0]
        return torch.stack(images) if images else torch.empty((0, *self.shape[1:]), dtype=torch.uint8)

    def train_batch(self, key, view: int, seed: int) -> torch.Tensor:
        """Training view ``view`` of the images at ``key``, drawn from ``(seed, view, index)``."""
        self.train_files.seed = int(seed)
        images = [self.train_files.view_of(i, view=view) for i in self._indices(key)]
        return torch.stack(images) if images else torch.empty((0, *self.shape[1:]), dtype=torch.uint8)

    def view(self, view: int, seed: int) -> TrainingView:
        """Training view ``view`` of every image, drawn from ``seed``, indexed as this object is."""
        return TrainingView(self, view, seed)

    def digest(self) -> str:
        """What identifies these images: each file's path, size and modification time, and the recipe."""
        import hashlib
        import os

        h = hashlib.sha256(f"{self.shape}|{self.train_files.policy}".encode())
        for path in self.eval_files.files:
            st = os.stat(path)
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


class TrainingView:
    """One training view of a :class:`LazyImages` (``x[key]`` is ``images.train_batch(key, view, seed)``):
    what a teacher cache holds for an epoch, standing where that epoch's images stand."""

    dtype = torch.uint8

    def __init__(self, images: LazyImages, view: int, seed: int) -> None:
        self.images, self.view, self.seed = images, int(view), int(seed)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.images.shape

    def __getitem__(self, key) -> torch.Tensor:
        batch = self.images.train_batch(key, view=self.view, seed=self.seed)
        return batch[0] if isinstance(key, numbers.Integral) else batch
