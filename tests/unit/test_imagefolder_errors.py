"""Bad image folders, made for real in tmp_path: every one is a one-line UserError naming the path,
raised by the builder itself, before training; special files are skipped without being opened."""

from __future__ import annotations

import io
import os
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from distill.data.imagefolder import imagefolder
from distill.errors import UserError

RNG = np.random.RandomState(0)


def _image(path: Path, side: int = 12, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.randint(0, 256, (side, side, 3), dtype=np.uint8), "RGB").save(path, fmt)


def _dataset(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for name in classes:
            for i in range(per_class):
                _image(root / split / name / f"{i}.png")
    return root


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Fails the test instead of hanging it when a read blocks (a FIFO opened for reading waits for a writer)."""

    def _expired(*_):
        raise TimeoutError(f"blocked for {seconds} s: a special file was opened")

    old = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _refused(root: Path, *needles: str) -> str:
    with _deadline(30), pytest.raises(UserError) as info:
        imagefolder(str(root), image_size=8)
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# --- files that are not (whole) images ------------------------------------------------------------


def test_a_non_image_named_jpg_is_refused_by_name(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    fake = root / "train" / "cat" / "notes.jpg"
    fake.write_text("these are my notes, not a photo\n")
    _refused(root, f"{fake} is not an image PIL can read")


def test_a_truncated_jpeg_is_refused_not_padded_with_grey(tmp_path: Path) -> None:
    import distill.stages  # noqa: F401  (everything a stage imports: none of it may relax PIL's check)

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    root = _dataset(tmp_path / "data")
    buffer = io.BytesIO()
    Image.fromarray(RNG.randint(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(buffer, "JPEG", quality=90)
    whole = buffer.getvalue()
    cut = root / "val" / "dog" / "photo.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    with Image.open(cut) as img:  # PIL opens it (the header is whole): only decoding the data finds the cut
        assert img.size == (64, 64)
    _refused(root, f"cannot decode image {cut}", "truncated")


def test_all_unreadable_images_are_counted_in_one_line(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    for i in range(5):
        (root / "train" / "cat" / f"bad{i}.png").write_bytes(b"\x89PNG nope")
    _refused(root, "bad0.png", "bad2.png", "and 2 more")


# --- the layout -----------------------------------------------------------------------------------


def test_root_that_is_a_file_or_missing(tmp_path: Path) -> None:
    file = tmp_path / "photos.zip"
    file.write_bytes(b"PK\x03\x04")
    _refused(file, f"dataset.root={file} is a file")
    _refused(tmp_path / "nowhere", f"dataset.root={tmp_path / 'nowhere'} does not exist")
    (tmp_path / "only_train" / "train").mkdir(parents=True)
    _refused(tmp_path / "only_train", "must hold train/<class>/ and val/<class>/")


def test_no_images_at_all(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    _refused(root, f"no class folders in {root / 'train'}")
    _image(root / "train" / "loose.png")  # an image beside the class folders, not in one
    _refused(root, "the 1 images directly in it need a class folder each")


def test_a_val_class_that_train_lacks_is_refused(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data", ("cat", "dog"))
    _image(root / "val" / "dgo" / "0.png")
    _refused(root, str(root / "val"), "train/ lacks: dgo", "did you mean 'dog'")


def test_val_and_test_may_leave_a_class_out(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data", ("cat", "dog"))
    _image(root / "test" / "dog" / "0.png")
    for path in (root / "val" / "cat").iterdir():
        path.unlink()
    (root / "val" / "cat").rmdir()
    data = imagefolder(str(root), image_size=8)
    assert data.classes == ["cat", "dog"] and data.val_y.tolist() == [1, 1] and data.test_y.tolist() == [1]


# --- folders that are not classes -----------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_an_empty_class_folder_is_refused_by_name(tmp_path: Path, split: str) -> None:
    root = _dataset(tmp_path / "data")
    empty = root / split / "cat"
    for path in empty.iterdir():
        path.unlink()
    (empty / "readme.txt").write_text("images come later\n")
    _refused(root, f"class folder {empty} has no images", "'readme.txt'")


@pytest.mark.parametrize(
    "link,target",
    [("train/loop", "train"), ("train/up", "."), ("val/loop", "val")],
    ids=["to-its-split", "to-the-root", "in-val"],
)
def test_a_class_folder_linking_back_is_refused(tmp_path: Path, link: str, target: str) -> None:
    root = _dataset(tmp_path / "data")
    os.symlink(root / target, root / link)
    assert (root / link).is_dir()  # what made it a class: it looks like one more folder
    _refused(root, f"class folder {root / link} links back to", "symbolic-link loop")


def test_a_link_looping_on_itself_is_refused(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    os.symlink(root / "train" / "spin", root / "train" / "spin")
    _refused(root, f"{root / 'train' / 'spin'} is a broken or looping symbolic link")


def test_a_linked_class_folder_elsewhere_and_hidden_entries_are_fine(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    _image(tmp_path / "elsewhere" / "0.png")
    os.symlink(tmp_path / "elsewhere", root / "train" / "emu")
    _image(root / "val" / "emu" / "0.png")
    (root / "train" / ".ipynb_checkpoints").mkdir()  # Jupyter's, empty: not a class
    (root / "train" / "cat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 macOS metadata")
    data = imagefolder(str(root), image_size=8)
    assert data.classes == ["cat", "dog", "emu"] and len(data.train_y) == 5


# --- special files --------------------------------------------------------------------------------


def test_fifos_and_devices_named_as_images_are_skipped_unopened(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    cat = root / "train" / "cat"
    os.mkfifo(cat / "pipe.png")  # opening it to read would wait for a writer forever
    os.symlink("/dev/zero", cat / "zeros.jpg")  # a device behind a link: read, it never ends
    os.symlink(cat / "0.png", cat / "linked.png")  # a link to a regular file is an image like any other
    (cat / "folder.png").mkdir()
    with _deadline(30):
        data = imagefolder(str(root), image_size=8)
    assert data.train_y.tolist() == [0, 0, 0, 1, 1]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device file needs root")
def test_a_device_file_is_skipped(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    os.mknod(root / "train" / "dog" / "null.png", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with _deadline(30):
        assert imagefolder(str(root), image_size=8).train_y.tolist() == [0, 0, 1, 1]


def test_a_class_folder_of_only_special_files_is_refused(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    dog = root / "train" / "dog"
    for path in dog.iterdir():
        path.unlink()
    os.mkfifo(dog / "pipe.png")
    _refused(root, f"class folder {dog} has no images", "skipped 'pipe.png': not a regular file")


# --- dataset.on_bad_image -------------------------------------------------------------------------


def _with_bad_files(root: Path) -> list[Path]:
    """A truncated JPEG, a text file named .jpg and a FIFO named .png among good images."""
    cat, dog = root / "train" / "cat", root / "train" / "dog"
    good = io.BytesIO()
    Image.fromarray(RNG.randint(0, 256, (40, 40, 3), dtype=np.uint8), "RGB").save(good, "JPEG")
    (cat / "cut.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (dog / "notes.jpg").write_text("not an image\n")
    os.mkfifo(dog / "pipe.png")
    return [cat / "cut.jpg", dog / "notes.jpg", dog / "pipe.png"]


def test_on_bad_image_skip_trains_without_them_and_names_them(tmp_path: Path, caplog) -> None:
    root = _dataset(tmp_path / "data")
    bad = _with_bad_files(root)
    with _deadline(30), caplog.at_level("WARNING", logger="distill"):
        data = imagefolder(str(root), image_size=8, on_bad_image="skip")
    assert data.train_y.tolist() == [0, 0, 1, 1], "the good images, and only those"
    assert len(data.skipped) == 3, data.skipped
    for path in bad:
        assert sum(str(path) in line for line in data.skipped) == 1, (path, data.skipped)
    assert "3 file(s) passed over" in caplog.text


def test_on_bad_image_error_stops_at_the_unreadable_files_but_never_opens_a_fifo(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    cut, notes, _ = _with_bad_files(root)
    message = _refused(root, str(cut), str(notes), "dataset.on_bad_image=skip")
    assert "pipe.png" not in message


def test_on_bad_image_takes_two_words_and_a_split_with_nothing_readable_is_refused(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    with pytest.raises(UserError, match="dataset.on_bad_image must be error or skip, got 'ignore'"):
        imagefolder(str(root), image_size=8, on_bad_image="ignore")
    for path in (root / "val").rglob("*.png"):
        path.write_text("broken")
    with pytest.raises(UserError, match=f"no image of {root / 'val'} could be read"):
        imagefolder(str(root), image_size=8, on_bad_image="skip")
