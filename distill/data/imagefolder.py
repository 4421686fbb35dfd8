"""Your own images in class folders: ``root/train/<class>/*``, ``root/val/<class>/*``, optional ``root/test``.

Small folders are decoded once into one uint8 tensor per split (each image's shorter side resized
to ``image_size / 0.875``, then the central ``image_size`` square: torchvision's eval recipe); large
ones stream from the files (``in_memory``, see :func:`imagefolder`). Without ``test/``, the val
split is also the test split (then ``test_acc`` is not independent of model selection: add a test
folder for honest numbers).

Every problem is a one-line :class:`~distill.errors.UserError` naming the path: a file that does
not decode, a class folder with no images, a class folder that links back to its own split (a
symbolic-link loop), a val/test class that train lacks. The whole layout is checked before the
first image is decoded, so a misplaced folder is reported in a moment, not after minutes of decoding.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import numpy as np
import torch

from distill.data.base import Splits, channel_stats, make_splits
from distill.data.streaming import IN_MEMORY, ON_BAD_IMAGE, POLICIES, STREAMED, ImageFiles, LazyImages
from distill.errors import UserError, closest

log = logging.getLogger("distill")

# How many problems one error line lists before "and N more".
_SHOWN = 3


def _extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(IMG_EXTENSIONS)


def _one_line(problems: list[str]) -> str:
    more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
    return "; ".join(problems[:_SHOWN]) + more


def _is_regular_file(path: Path) -> bool:
    """A regular file, following symbolic links, decided from ``stat`` alone: opening a FIFO or a
    device named ``*.png`` would block (or read forever) before PIL could refuse it."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:  # a broken or looping link: kept, so that decoding reports it by name
        return path.is_symlink()


def _class_folders(folder: Path) -> list[str]:
    """The class folder names of a split, refusing entries that cannot be classes."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; it must hold one folder of images per class")
    here = folder.resolve()
    names, problems = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):  # .ipynb_checkpoints, .DS_Store, .git: never a class
            continue
        if entry.is_symlink():
            try:
                target = entry.resolve(strict=True)
            except (OSError, RuntimeError):  # RuntimeError: Python 3.11's "Symlink loop from ..."
                problems.append(f"{entry} is a broken or looping symbolic link")
                continue
            if target == here or target in here.parents:
                problems.append(f"class folder {entry} links back to {target}: a symbolic-link loop, not a class")
                continue
        if entry.is_dir():
            names.append(entry.name)
    if problems:
        raise UserError(_one_line(problems))
    if not names:
        loose = [p.name for p in folder.iterdir() if p.suffix.lower() in _extensions()]
        hint = f" (the {len(loose)} images directly in it need a class folder each)" if loose else ""
        raise UserError(
            f"no class folders in {folder}{hint}: put the images in {folder}/<class>/ "
            f"(extensions: {', '.join(_extensions())})"
        )
    return names


def _scan_split(folder: Path, classes: list[str] | None) -> tuple[list[str], list[tuple[Path, int]], list[str]]:
    """(class names, (image file, label) pairs, special files passed over) of one split, decoding nothing."""
    found = _class_folders(folder)
    if classes is not None:
        extra = sorted(set(found) - set(classes))
        if extra:
            hint = closest(extra[0], classes)
            raise UserError(f"{folder} has class folders that train/ lacks: {', '.join(extra)}{hint}")
    classes = classes if classes is not None else found
    files, empty, special = [], [], []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if name not in found:  # a val/test split may leave a class out
            continue
        # Hidden files are skipped like hidden folders: macOS leaves "._name.jpg" metadata beside images.
        entries = sorted(p for p in class_dir.iterdir() if not p.name.startswith("."))
        named = [p for p in entries if p.suffix.lower() in _extensions()]
        images = [p for p in named if _is_regular_file(p)]
        special += [f"{p}: not a regular file" for p in named if p not in images]
        if not images:
            others = [p.name for p in entries if p.is_file() and p.suffix.lower() not in _extensions()]
            skipped = [p.name for p in named]
            held = f"; it holds {len(others)} other files, e.g. {others[0]!r}" if others else ""
            held += f"; skipped {skipped[0]!r}: not a regular file" if skipped else ""
            empty.append(f"class folder {class_dir} has no images{held}")
        files.extend((p, label) for p in images)
    if empty:
        raise UserError(
            f"{_one_line(empty)} (extensions: {', '.join(_extensions())}; remove the folder or add its images)"
        )
    return classes, files, special


def _decode(
    files: list[tuple[Path, int]], image_size: int, channels: int, on_bad_image: str, skipped: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of one split; an unreadable one stops the run (``error``) or is added to ``skipped``."""
    # decoded as the streaming path decodes its eval images: the same pixels whichever path runs
    reader = ImageFiles([p for p, _ in files], [y for _, y in files], image_size, channels)
    images, labels, problems = [], [], []
    for i, (_, label) in enumerate(files):
        try:
            images.append(reader.view_of(i))
        except UserError as e:
            problems.append(str(e))
            continue
        labels.append(label)
    if problems and on_bad_image == "error":
        raise UserError(f"{_one_line(problems)} (dataset.on_bad_image=skip trains without them)")
    skipped += problems
    if not images:
        raise UserError(f"no image of {files[0][0].parent.parent} could be read: {_one_line(problems)}")
    return torch.stack(images), torch.tensor(labels)


def imagefolder(
    root: str,
    image_size: int = 224,
    channels: int = 3,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    augment: str = "crop_flip",
    on_bad_image: str = "error",
    in_memory: str | bool = "auto",
    memory_gb: float = 2.0,
    policy: str = "none",
):
    """Reads an image-folder dataset into :class:`~distill.data.base.Splits` (class names = folder names).

    ``on_bad_image``: ``error`` stops at a file that does not decode (naming it), ``skip`` trains
    without it; either way the files passed over (those, and FIFOs or devices named like images, which
    are never opened) are logged and kept in ``Splits.skipped``.

    ``in_memory``: ``true`` decodes every image once into uint8 tensors (the fast path for small
    folders); ``false`` streams them from the files (:class:`~distill.data.streaming.LazyImages`:
    random resized crops and flips for training, decoded in the DataLoader's workers); ``auto``
    decodes when the splits take at most ``memory_gb`` decoded, and streams otherwise. Both paths
    evaluate on the same pixels (the shorter side resized to ``image_size / 0.875``, the centre crop).

    Raises:
        UserError: in one line naming the path, for any layout or image problem (see the module's docstring).
    """
    base = Path(root)
    check_options(channels, on_bad_image, in_memory, memory_gb, policy)
    if not base.exists():
        raise UserError(f"dataset.root={root} does not exist")
    if not base.is_dir():
        raise UserError(f"dataset.root={root} is a file; give the folder that holds train/<class>/ and val/<class>/")
    if not (base / "train").is_dir() or not (base / "val").is_dir():
        raise UserError(
            f"dataset.root={root} must hold train/<class>/ and val/<class>/ folders (and optionally test/<class>/)"
        )
    classes, train_files, skipped = _scan_split(base / "train", None)
    _, val_files, special = _scan_split(base / "val", classes)
    skipped += special
    test_files = None
    if (base / "test").is_dir():
        _, test_files, special = _scan_split(base / "test", classes)
        skipped += special
    return image_splits(
        base,
        classes,
        (train_files, val_files, test_files),
        skipped,
        image_size=image_size,
        channels=channels,
        val_fraction=val_fraction,
        split_seed=split_seed,
        augment=augment,
        on_bad_image=on_bad_image,
        in_memory=in_memory,
        memory_gb=memory_gb,
        policy=policy,
    )


def check_options(channels: int, on_bad_image: str, in_memory: str | bool, memory_gb: float, policy: str) -> None:
    """One-line errors for the settings every image-file dataset takes."""
    if channels not in (1, 3):
        raise UserError(f"dataset.channels must be 1 or 3, got {channels}")
    if isinstance(memory_gb, bool) or not isinstance(memory_gb, (int, float)) or memory_gb < 0:
        raise UserError(f"dataset.memory_gb must be a number >= 0, got {memory_gb!r}")
    if policy not in POLICIES:
        raise UserError(f"dataset.policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if on_bad_image not in ON_BAD_IMAGE:
        raise UserError(f"dataset.on_bad_image must be error or skip, got {on_bad_image!r}")
    if str(in_memory).lower() not in IN_MEMORY:
        raise UserError(f"dataset.in_memory must be auto, true or false, got {in_memory!r}")


def image_splits(
    base: Path,
    classes: list[str],
    files: tuple[list[tuple[Path, int]], list[tuple[Path, int]], list[tuple[Path, int]] | None],
    skipped: list[str],
    *,
    image_size: int,
    channels: int,
    val_fraction: float,
    split_seed: int,
    augment: str,
    on_bad_image: str,
    in_memory: str | bool,
    memory_gb: float,
    policy: str,
):
    """Splits of listed image files ``(train, val, test or None)`` as ``(path, label)`` pairs: decoded
    into memory, or streamed from the files (see :func:`imagefolder` for the settings). ``base``
    names the dataset (its folder name) in the log and in ``Splits.name``."""
    train_files, val_files, test_files = files
    count = len(train_files) + len(val_files) + len(test_files or [])
    gb = count * channels * image_size * image_size / 1e9
    stream = str(in_memory).lower() == "false" or (str(in_memory).lower() == "auto" and gb > memory_gb)
    log.info(
        "dataset %s: %d images, %.2f GB decoded at %d px: %s",
        base,
        count,
        gb,
        image_size,
        "streamed from the files" if stream else "decoded once into memory",
    )
    if policy != "none" and not stream:
        log.warning("dataset.policy=%s applies to streamed folders; this one is in memory (dataset.in_memory)", policy)
    if stream:  # checked now, decoded when read (see _readable)
        splits = (
            _readable(train_files, channels, on_bad_image, skipped),
            _readable(val_files, channels, on_bad_image, skipped),
            _readable(test_files, channels, on_bad_image, skipped) if test_files is not None else None,
        )
        return _streamed(base, classes, splits, image_size, channels, skipped, augment, policy)
    tx, ty = _decode(train_files, image_size, channels, on_bad_image, skipped)
    vx, vy = _decode(val_files, image_size, channels, on_bad_image, skipped)
    sx, sy = _decode(test_files, image_size, channels, on_bad_image, skipped) if test_files is not None else (vx, vy)
    if skipped:
        log.warning("dataset %s: %d file(s) passed over: %s", base, len(skipped), _one_line(skipped))
    splits = make_splits(
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
    splits.skipped = skipped
    return splits


def _streamed(
    base: Path,
    classes: list[str],
    splits: tuple[list[tuple[Path, int]], list[tuple[Path, int]], list[tuple[Path, int]] | None],
    image_size: int,
    channels: int,
    skipped: list[str],
    augment: str,
    policy: str,
):
    """Splits whose images stay in their files (``LazyImages``); normalisation statistics from a
    sample of 256 training images. ``augment=none`` trains on the eval crops; any other, on random
    resized crops and flips (then ``policy``)."""

    train, val, test = (
        (LazyImages([p for p, _ in files], [y for _, y in files], image_size, channels, policy), _labels(files))
        for files in (splits[0], splits[1], splits[2] if splits[2] is not None else splits[1])
    )
    if skipped:
        log.warning("dataset %s: %d file(s) passed over: %s", base, len(skipped), _one_line(skipped))
    sample = np.random.RandomState(0).permutation(len(train[0]))[:256]
    mean, std = channel_stats(train[0][torch.from_numpy(np.sort(sample))])
    return Splits(
        base.name or "imagefolder",
        train[0],
        train[1],
        val[0],
        val[1],
        test[0],
        test[1],
        classes,
        mean,
        std,
        "none" if augment == "none" else STREAMED,
        skipped,
    )


def _readable(
    files: list[tuple[Path, int]], channels: int, on_bad_image: str, skipped: list[str]
) -> list[tuple[Path, int]]:
    """The files fit to stream; the others stop the run (``error``) or join ``skipped``. With ``error``
    only headers are read (a file whose pixels turn out unreadable stops the run when first read,
    naming it); with ``skip`` every file is decoded once, JPEGs at 1/8 scale, so none fails later."""
    reader = ImageFiles([p for p, _ in files], [y for _, y in files], 1, channels)
    kept, problems = [], []
    for i, found in enumerate(files):
        try:
            reader.check(i, decode=on_bad_image == "skip")
            kept.append(found)
        except UserError as e:
            problems.append(str(e))
    if problems and on_bad_image == "error":
        raise UserError(f"{_one_line(problems)} (dataset.on_bad_image=skip trains without them)")
    skipped += problems
    if not kept:
        raise UserError(f"no image of {files[0][0].parent.parent} could be read: {_one_line(problems)}")
    return kept


def _labels(files: list[tuple[Path, int]]) -> torch.Tensor:
    return torch.tensor([y for _, y in files], dtype=torch.long)
