"""Images listed in CSV files: one ``path,label`` line per image (a ``path,label`` header is allowed),
paths relative to the CSV file's folder (or absolute), labels the class names.

``train`` and ``val`` are required, ``test`` optional (without it, val is also the test split, as
for image folders). The classes are the training list's labels, in order (numerically when every
label is an integer, else alphabetically); a val/test label that train lacks is refused. Decoding,
streaming and the recipes are those of :func:`distill.data.imagefolder.imagefolder`.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from distill.data.imagefolder import _is_regular_file, _one_line, check_options, image_splits
from distill.errors import UserError, closest, first_line


def _read_list(csv_path: Path, key: str) -> tuple[list[tuple[Path, str]], list[str]]:
    """``(path, label)`` of each line, and the special files (FIFOs, devices) passed over unopened.
    A missing file, an empty list or a malformed line is a one-line error naming the file and line."""
    if not csv_path.is_file():
        raise UserError(f"dataset.{key}={csv_path} is not a file; give a CSV of path,label lines")
    rows, missing, special = [], [], []
    try:  # utf-8-sig: the byte-order mark spreadsheets put first is not part of the first path
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            lines = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"dataset.{key}={csv_path} is not a UTF-8 CSV of path,label lines ({first_line(e)})") from None
    for number, row in enumerate(lines, start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if [c.strip().lower() for c in row] == ["path", "label"]:  # a header (lists joined together repeat it)
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"{csv_path}: record {number}: expected path,label, got {','.join(row)[:120]!r}")
        path = Path(row[0].strip())
        path = path if path.is_absolute() else csv_path.parent / path
        if not path.exists() and not path.is_symlink():
            hint = " (write paths with /)" if "\\" in row[0] else ""
            missing.append(f"{csv_path}: record {number}: {path} does not exist{hint}")
        elif not _is_regular_file(path):
            special.append(f"{path}: not a regular file")
        else:
            rows.append((path, row[1].strip()))
    if missing:
        raise UserError(f"{len(missing)} listed file(s) missing: {_one_line(missing)}")
    if not rows:
        raise UserError(f"dataset.{key}={csv_path} lists no images")
    return rows, special


def _class_order(labels: set[str]) -> list[str]:
    """Integers in numeric order ("01" after "1", ties by text), anything else alphabetically."""
    if all(re.fullmatch(r"-?[0-9]+", label) for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)


def filelist(
    train: str,
    val: str,
    test: str | None = None,
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
    """Reads images listed in CSV files into :class:`~distill.data.base.Splits` (see the module's docstring).

    Raises:
        UserError: in one line naming the file (and line), for any list or image problem.
    """
    check_options(channels, on_bad_image, in_memory, memory_gb, policy)
    train_rows, skipped = _read_list(Path(train), "train")
    classes = _class_order({label for _, label in train_rows})
    index = {name: i for i, name in enumerate(classes)}
    lists = []
    for key, csv_path in (("val", val), ("test", test)):
        if csv_path is None:
            lists.append(None)
            continue
        rows, special = _read_list(Path(csv_path), key)
        skipped += special
        unknown = sorted({label for _, label in rows} - set(classes))
        if unknown:
            raise UserError(
                f"dataset.{key}={csv_path} has labels the training list lacks: "
                f"{', '.join(unknown[:5])}{closest(unknown[0], classes)}"
            )
        lists.append([(p, index[label]) for p, label in rows])
    return image_splits(
        Path(train).parent,
        classes,
        ([(p, index[label]) for p, label in train_rows], lists[0], lists[1]),
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
