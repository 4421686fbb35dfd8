"""dataset=filelist: images listed in CSV files (path,label, relative to the list), read as the image
folder of the same files is, and one line naming the list and line for every problem."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from distill.data.filelist import filelist
from distill.data.imagefolder import imagefolder
from distill.data.streaming import LazyImages
from distill.errors import UserError
from tests.conftest import write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("photos"), 40, seed=2)


def _lists(root: Path) -> dict[str, str]:
    return {split: str(root / f"{split}.csv") for split in ("train", "val", "test")}


def test_a_list_of_a_folders_files_gives_the_folders_splits_in_memory_and_streamed(folder):
    held = imagefolder(str(folder), image_size=16, in_memory=True)
    listed = filelist(**_lists(folder), image_size=16, in_memory=True)
    assert listed.classes == held.classes == [str(c) for c in range(10)]
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(listed, f"{part}_y"), getattr(held, f"{part}_y")), part
        assert torch.equal(getattr(listed, f"{part}_x"), getattr(held, f"{part}_x")), part
    streamed = filelist(**_lists(folder), image_size=16, in_memory=False)
    assert isinstance(streamed.train_x, LazyImages) and torch.equal(streamed.test_x[:], held.test_x)
    no_test = filelist(train=_lists(folder)["train"], val=_lists(folder)["val"], image_size=16)
    assert torch.equal(no_test.test_y, held.val_y), "without test, val is the test split"


def test_paths_are_relative_to_the_list_labels_are_names_and_integers_sort_as_numbers(folder, tmp_path):
    images = sorted((folder / "train").rglob("*.jpg"))
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = [f"{os.path.relpath(p, lists)},{'cat' if i % 2 else 'dog house'}" for i, p in enumerate(images[:8])]
    rows.append(f"{images[8]},cat")  # an absolute path
    (lists / "train.csv").write_text("\n".join(rows) + "\n\n")
    (lists / "val.csv").write_text(f"path,label\n{os.path.relpath(images[9], lists)},cat\n")
    data = filelist(str(lists / "train.csv"), str(lists / "val.csv"), image_size=8)
    assert data.classes == ["cat", "dog house"] and (len(data.train_y), len(data.val_y)) == (9, 1)
    numbered = tmp_path / "numbered.csv"
    numbered.write_text("".join(f"{images[i]},{label}\n" for i, label in enumerate(["10", "2", "-1", "02"])))
    assert filelist(str(numbered), str(numbered), image_size=8).classes == ["-1", "02", "2", "10"]
    numbered.write_text(f"{images[0]},2\n{images[1]},\u00b2\n")  # a superscript two is no integer: by text
    assert filelist(str(numbered), str(numbered), image_size=8).classes == ["2", "\u00b2"]
    # a spreadsheet's UTF-8 CSV (a byte-order mark first), and two lists joined (the header twice)
    joined = tmp_path / "joined.csv"
    joined.write_bytes(b"\xef\xbb\xbf" + f"path,label\n{images[0]},a\npath,label\n{images[1]},b\n".encode())
    assert filelist(str(joined), str(joined), image_size=8).classes == ["a", "b"]


def test_every_problem_is_one_line_naming_the_list_and_line(folder, tmp_path):
    train = _lists(folder)["train"]
    cases = {
        "missing.csv": ("train/0/nope.jpg,0\n", r"missing: .*missing.csv: record 1: .*nope.jpg does not"),
        "short.csv": ("path,label\ntrain/0/x.jpg\n", r"short.csv: record 2: expected path,label, got 'train/0/x.jpg'"),
        "windows.csv": ("train\\0\\x.jpg,0\n", r"x.jpg does not exist \(write paths with /\)"),
        "empty.csv": ("path,label\n", "dataset.val=.*empty.csv lists no images"),
        "other.csv": (f"{sorted((folder / 'val' / '3').iterdir())[0]},three\n",
                      "has labels the training list lacks: three"),
    }  # fmt: skip
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        (tmp_path / "train").mkdir(exist_ok=True)
        with pytest.raises(UserError, match=needle):
            filelist(train, str(tmp_path / name), image_size=8)
    (tmp_path / "latin1.csv").write_bytes("train/0/caf\xe9.jpg,0\n".encode("cp1252"))
    with pytest.raises(UserError, match=r"dataset.val=.*latin1.csv is not a UTF-8 CSV of path,label lines"):
        filelist(train, str(tmp_path / "latin1.csv"), image_size=8)
    with pytest.raises(UserError, match=r"dataset.train=.*absent.csv is not a file"):
        filelist(str(tmp_path / "absent.csv"), train, image_size=8)


def test_a_fifo_is_never_opened_and_a_bad_image_is_skipped_on_request(folder, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(folder, root)
    os.mkfifo(root / "train" / "0" / "pipe.jpg")
    (root / "train" / "1" / "text.jpg").write_text("not a picture")
    with open(root / "train.csv", "a") as f:
        f.write("train/0/pipe.jpg,0\ntrain/1/text.jpg,1\n")
    with pytest.raises(UserError, match=r"text.jpg is not an image PIL can read \(dataset.on_bad_image=skip"):
        filelist(**_lists(root), image_size=8)
    data = filelist(**_lists(root), image_size=8, on_bad_image="skip")
    assert len(data.skipped) == 2 and any("pipe.jpg: not a regular file" in s for s in data.skipped)
    assert (len(data.train_y), len(data.val_y)) == (20, 10), "the 20 training images listed, without the 2 bad ones"
