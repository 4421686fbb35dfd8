"""torchvision datasets and image folders, read from small files the tests write in the real formats."""

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from distill.data.imagefolder import imagefolder
from distill.data.torchvision_sets import cifar10, cifar100, fashion_mnist, mnist
from distill.errors import UserError

RNG = np.random.RandomState(0)


def _idx_images(path: Path, images: np.ndarray) -> None:
    path.write_bytes(struct.pack(">IIII", 2051, len(images), 28, 28) + images.astype(np.uint8).tobytes())


def _idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.mark.parametrize("loader,folder", [(mnist, "MNIST"), (fashion_mnist, "FashionMNIST")])
def test_mnist_idx_files_round_trip(tmp_path, loader, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    tr_x, te_x = RNG.randint(0, 256, (20, 28, 28)), RNG.randint(0, 256, (10, 28, 28))
    tr_y, te_y = np.arange(20) % 10, np.arange(10)
    _idx_images(raw / "train-images-idx3-ubyte", tr_x)
    _idx_labels(raw / "train-labels-idx1-ubyte", tr_y)
    _idx_images(raw / "t10k-images-idx3-ubyte", te_x)
    _idx_labels(raw / "t10k-labels-idx1-ubyte", te_y)
    data = loader(str(tmp_path), val_fraction=0.25)
    assert data.test_x.shape == (10, 1, 28, 28) and np.array_equal(data.test_x[:, 0].numpy(), te_x)
    assert data.test_y.tolist() == te_y.tolist() and len(data.classes) == 10
    assert len(data.train_y) == 15 and len(data.val_y) == 5
    together = np.concatenate([data.train_x[:, 0].numpy(), data.val_x[:, 0].numpy()])
    assert sorted(map(bytes, together)) == sorted(map(bytes, tr_x.astype(np.uint8)))


def _cifar_files(
    tmp_path: Path,
    monkeypatch,
    cls,
    folder: str,
    train_names: list[str],
    label_key: str,
    meta_name: str,
    meta_key: str,
    n_classes: int,
) -> np.ndarray:
    base = tmp_path / folder
    base.mkdir()
    test_x = RNG.randint(0, 256, (6, 3, 32, 32)).astype(np.uint8)

    def batch(name: str, x: np.ndarray) -> list:
        labels = list(np.arange(len(x)) % n_classes)
        (base / name).write_bytes(pickle.dumps({"data": x.reshape(len(x), -1), label_key: labels}))
        return [name, hashlib.md5((base / name).read_bytes()).hexdigest()]

    train_list = [batch(n, RNG.randint(0, 256, (4, 3, 32, 32)).astype(np.uint8)) for n in train_names]
    test_list = [batch("test_batch" if folder.startswith("cifar-10-") else "test", test_x)]
    names = [f"class {i}" for i in range(n_classes)]
    (base / meta_name).write_bytes(pickle.dumps({meta_key: names}))
    meta = {"filename": meta_name, "key": meta_key, "md5": hashlib.md5((base / meta_name).read_bytes()).hexdigest()}
    # The real files' checksums are fixed by torchvision; ours are tiny, so tell it theirs.
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", test_list)
    monkeypatch.setattr(cls, "meta", meta)
    return test_x


def test_cifar10_batches_round_trip(tmp_path, monkeypatch):
    import torchvision

    test_x = _cifar_files(
        tmp_path,
        monkeypatch,
        torchvision.datasets.CIFAR10,
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "labels",
        "batches.meta",
        "label_names",
        10,
    )
    data = cifar10(str(tmp_path), val_fraction=0.1)
    assert data.test_x.shape == (6, 3, 32, 32) and np.array_equal(data.test_x.numpy(), test_x)
    assert data.classes == [f"class {i}" for i in range(10)] and len(data.train_y) + len(data.val_y) == 20
    assert data.augment == "crop_flip"


def test_cifar100_batches_round_trip(tmp_path, monkeypatch):
    import torchvision

    test_x = _cifar_files(
        tmp_path,
        monkeypatch,
        torchvision.datasets.CIFAR100,
        "cifar-100-python",
        ["train"],
        "fine_labels",
        "meta",
        "fine_label_names",
        100,
    )
    data = cifar100(str(tmp_path), val_fraction=0.25)
    assert np.array_equal(data.test_x.numpy(), test_x) and data.num_classes == 100


@pytest.mark.parametrize("loader", [mnist, cifar10])
def test_missing_files_say_how_to_fix(tmp_path, loader):
    with pytest.raises(UserError, match="dataset.download=true"):
        loader(str(tmp_path))


def _write_images(folder: Path, classes: dict[str, int], mode: str, ext: str) -> None:
    for name, n in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(n):
            size = (10 + i, 7 + 2 * i)
            arr = RNG.randint(0, 256, size[::-1] + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
            Image.fromarray(arr, mode).save(folder / name / f"img {i}.{ext}")


@pytest.mark.parametrize("with_test", [True, False])
def test_imagefolder_reads_odd_class_names(tmp_path, with_test):
    classes = {"10": 3, "a b": 4, "ünïcode cls": 2}
    _write_images(tmp_path / "train", classes, "RGB", "png")
    _write_images(tmp_path / "val", {"10": 1, "a b": 1, "ünïcode cls": 1}, "L", "jpg")
    if with_test:
        _write_images(tmp_path / "test", {"a b": 2}, "RGB", "jpeg")
    data = imagefolder(str(tmp_path), image_size=16, channels=3)
    assert data.classes == ["10", "a b", "ünïcode cls"]
    assert data.train_x.shape == (9, 3, 16, 16) and data.train_y.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert len(data.val_y) == 3
    assert data.test_y.tolist() == ([1, 1] if with_test else data.val_y.tolist())
    grey = imagefolder(str(tmp_path), image_size=8, channels=1)
    assert grey.train_x.shape == (9, 1, 8, 8)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(UserError, match="train/<class>/ and val/<class>/"):
        imagefolder(str(tmp_path))
    _write_images(tmp_path / "train", {"cat": 2}, "RGB", "png")
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="class folder .*cat has no images"):
        imagefolder(str(tmp_path))
    (tmp_path / "val" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        imagefolder(str(tmp_path))
    (tmp_path / "val" / "dog").mkdir()
    with pytest.raises(UserError, match="lacks: dog"):
        imagefolder(str(tmp_path))
