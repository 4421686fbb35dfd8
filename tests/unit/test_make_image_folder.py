"""scripts/make_image_folder.py writes a realistic ImageFolder from real pixels: photographs with a
handwritten digit pasted on, non-square JPEGs of 256-500 px, balanced classes, the same bytes for
the same seed, and a folder that distill's imagefolder dataset reads."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from PIL import Image

from distill.data.imagefolder import imagefolder

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_image_folder.py"


def _module():
    spec = importlib.util.spec_from_file_location("make_image_folder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_folder_holds_non_square_jpegs_of_every_class_and_distill_reads_it(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "f"), "--images", "60", "--glyphs", "digits"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "60 JPEGs" in result.stdout
    for split, per_class in (("train", 4), ("val", 1), ("test", 1)):
        folders = sorted(p.name for p in (tmp_path / "f" / split).iterdir())
        assert folders == [str(c) for c in range(10)]
        assert all(len(list((tmp_path / "f" / split / c).iterdir())) == per_class for c in folders)
    sizes = []
    for path in (tmp_path / "f").rglob("*.jpg"):
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.append(im.size)
    assert all(256 <= side <= 500 for size in sizes for side in size)
    assert sum(w != h for w, h in sizes) > len(sizes) // 2, "mostly non-square"
    data = imagefolder(str(tmp_path / "f"), image_size=32, augment="none")
    assert data.classes == [str(c) for c in range(10)] and len(data.test_y) == 10


def test_the_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    module = _module()
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        module.write(tmp_path / name, 30, seed=seed, source="digits")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert len(files) == 30  # 1 val, 1 test and 1 train image per class
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in files)
