"""Precomputed logits in a safetensors file as the teacher: read back exactly, checked against the split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from distill.errors import UserError
from distill.models.logits_teacher import LogitsFileTeacher, write_logits_file


def test_logits_file_round_trip(tmp_path: Path) -> None:
    logits = torch.randn(6, 3)
    path = write_logits_file(tmp_path / "sub" / "teacher.safetensors", logits, ["a", "b", "c"])
    teacher = LogitsFileTeacher(path)
    assert teacher.classes == ["a", "b", "c"] and (teacher.num_samples, teacher.num_classes) == (6, 3)
    index = torch.tensor([4, 0, 4])
    assert torch.equal(teacher(index), logits[index])
    assert torch.equal(teacher(torch.tensor([[1, 2]])), logits[torch.tensor([[1, 2]])])
    assert teacher.state_dict() == {} and list(teacher.parameters()) == []
    teacher.check(6, ["a", "b", "c"])
    assert LogitsFileTeacher(write_logits_file(tmp_path / "bare.safetensors", logits)).classes is None


def test_logits_file_mismatches_are_user_errors(tmp_path: Path) -> None:
    teacher = LogitsFileTeacher(write_logits_file(tmp_path / "t.safetensors", torch.randn(4, 2), ["x", "y"]))
    with pytest.raises(UserError, match=r"4 rows but the training split has 5 images.*2 logits per image"):
        teacher.check(5, ["x", "y", "z"])
    with pytest.raises(UserError, match=r"position 1: 'y' vs 'z'"):
        teacher.check(4, ["x", "z"])
    with pytest.raises(UserError, match="does not exist"):
        LogitsFileTeacher(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="not a safetensors file"):
        LogitsFileTeacher(tmp_path / "junk.safetensors")
    save_file({"scores": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match=r"no tensor 'logits' \(it has \['scores'\]\)"):
        LogitsFileTeacher(tmp_path / "other.safetensors")
    save_file({"logits": torch.zeros(2, 2)}, str(tmp_path / "k.safetensors"), metadata={"classes": '["a"]'})
    with pytest.raises(UserError, match="names 1 classes but the logits have 2 columns"):
        LogitsFileTeacher(tmp_path / "k.safetensors")
