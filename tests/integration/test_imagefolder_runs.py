"""A run on a realistic image folder (scripts/make_image_folder.py) with an unreadable file in it:
refused by default, trained without it under dataset.on_bad_image=skip, which summary.json records."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from distill import api
from distill.errors import UserError
from tests.conftest import ONE_EPOCH, outputs_root

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_image_folder.py"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("make_image_folder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("photos")
    module.write(root, 40, seed=0, source="digits")
    (root / "train" / "3" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not the rest of a JPEG")
    return root


def test_an_unreadable_image_is_refused_by_default_and_skipped_on_request(folder, tmp_path):
    args = ["teacher=mlp", "dataset=imagefolder", f"dataset.root={folder}", "dataset.image_size=16", *ONE_EPOCH]
    with pytest.raises(UserError, match="broken.jpg.*dataset.on_bad_image=skip"):
        api.run("teacher", [*args, outputs_root(tmp_path)])
    summary = api.run("teacher", [*args, "dataset.on_bad_image=skip", outputs_root(tmp_path)])
    assert summary["skipped_images"]["count"] == 1
    assert str(folder / "train" / "3" / "broken.jpg") in summary["skipped_images"]["first"][0]
