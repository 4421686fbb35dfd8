"""An ONNX file as the teacher: PyTorch's logits from onnxruntime, its model.json checked against the
graph and the dataset, and a bad model.json a one-line error naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.errors import UserError
from distill.models.onnx_teacher import OnnxTeacher, read_description
from tests.conftest import linear_onnx

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_onnx_file(path: Path) -> Path:
    linear_onnx(path)
    return path


def test_onnx_teacher_gives_pytorch_logits(exported_vit) -> None:
    model, path = exported_vit
    teacher = OnnxTeacher(path, threads=1)
    assert teacher.classes == [f"c{i}" for i in range(10)]
    assert teacher.num_classes == 10 and teacher.input_shape == (1, 28, 28)
    assert list(teacher.parameters()) == [] and teacher.requires_grad_(False).eval() is teacher
    teacher.check_input(1, 28, 28)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64).transpose(2, 3)  # float64, not contiguous
    got = teacher(x)
    with torch.no_grad():
        want = model(x.float())
    assert got.dtype == torch.float32 and got.device == x.device and got.shape == (3, 10)
    assert (got - want).abs().max() < 1e-4


def test_onnx_teacher_refuses_mismatched_input(exported_vit) -> None:
    teacher = OnnxTeacher(exported_vit[1], threads=1)
    with pytest.raises(UserError, match=r"takes 1x28x28 .* dataset has 3x32x32"):
        teacher.check_input(3, 32, 32)


def test_onnx_teacher_refuses_what_is_not_an_onnx_model(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        OnnxTeacher(tmp_path / "missing.onnx")
    bad = tmp_path / "teacher.onnx"
    bad.write_text("not a model\n")
    with pytest.raises(UserError, match="not a valid ONNX model"):
        OnnxTeacher(bad)


def test_onnx_teacher_json_must_agree_with_graph(tmp_path: Path) -> None:
    path = tmp_path / "t.onnx"
    linear_onnx(path, (3, 2, 2), k=3)
    path.with_suffix(".json").write_text(json.dumps({"classes": ["a", "b"], "input": {"channels": 1}}))
    with pytest.raises(UserError, match=r"channels 1 in the JSON but 3 in the graph; 2 classes in the JSON"):
        OnnxTeacher(path)


def test_onnx_teacher_without_json_reads_the_graph_and_splits_fixed_batches(tmp_path: Path) -> None:
    path = tmp_path / "fixed.onnx"
    w = linear_onnx(path, (3, 2, 2), k=3, batch=2)
    teacher = OnnxTeacher(path, threads=1)
    assert teacher.classes is None and teacher.num_classes == 3 and teacher.input_shape == (3, 2, 2)
    x = torch.rand(5, 3, 2, 2)  # 5 images through a graph that takes exactly 2
    assert np.allclose(teacher(x).numpy(), x.flatten(1).numpy() @ w, atol=1e-5)

    free = tmp_path / "free.onnx"
    linear_onnx(free, ("c", "h", "w"), k=3, batch="n")
    teacher = OnnxTeacher(free, threads=1)
    assert teacher.input_shape == (None, None, None) and teacher.num_classes == 3
    teacher.check_input(3, 2, 2)  # free dimensions take anything


GOOD = {"classes": ["a", "b"], "input": {"channels": 1, "height": 2, "width": 2, "mean": [0.5], "std": [0.25]}}

# (what model.json holds, what the one line must say after "model.json")
BAD = [
    ('{"classes": ["a", "b"], "input": ' + "[" * 100_000 + "]" * 100_000 + "}", " is not a valid model.json"),
    ("[" * 100_000 + "]" * 100_000, " is not a valid model.json (nested too deeply)"),
    ('{"classes": ["a", "b"],', " is not a valid model.json (JSONDecodeError"),
    (b"\xff\xfe{}", " is not a valid model.json (UnicodeDecodeError"),
    ('["a", "b"]', " is not a valid model.json (an object"),
    ({"classes": "ab"}, ": classes must be a non-empty list of names"),
    ({"classes": ["a", 2]}, ": classes must be a non-empty list of names"),
    ({"classes": []}, ": classes must be a non-empty list of names"),
    ({"input": [1, 2, 2]}, ": input must be an object"),
    ({"input": {"channels": True}}, ": input.channels must be a whole number from 1 to 4096, got true"),
    ({"input": {"height": 2.0}}, ": input.height must be a whole number"),
    ({"input": {"width": "2"}}, ": input.width must be a whole number"),
    ({"input": {"width": 0}}, ": input.width must be a whole number"),
    ({"input": {"height": 10**9}}, ": input.height must be a whole number from 1 to 16384"),
    ({"input": {"channels": float("nan")}}, ": input.channels must be a whole number"),
]


@pytest.mark.parametrize("content,needle", BAD, ids=[f"{i}" for i in range(len(BAD))])
def test_a_bad_model_json_is_one_line_naming_file_and_key(tmp_path: Path, content, needle: str) -> None:
    meta = tmp_path / "model.json"
    if isinstance(content, bytes):
        meta.write_bytes(content)
    else:
        meta.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(UserError) as info:
        OnnxTeacher(linear_onnx_file(tmp_path / "model.onnx"))
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    assert message.startswith(f"{meta}{needle}"), message


def test_an_oversized_model_json_is_not_parsed(tmp_path: Path) -> None:
    meta = tmp_path / "model.json"
    with meta.open("wb") as f:  # sparse: 20 MB on paper, nothing on disk
        f.truncate(20 * 2**20)
    with pytest.raises(UserError, match=r"model.json is not a valid model.json \(20 MB"):
        read_description(meta)


def test_a_good_model_json_and_nulls_still_read(tmp_path: Path) -> None:
    onnx_file = tmp_path / "model.onnx"
    linear_onnx(onnx_file)
    (tmp_path / "model.json").write_text(json.dumps(GOOD))
    teacher = OnnxTeacher(onnx_file)
    assert teacher.classes == ["a", "b"] and teacher.input_shape == (1, 2, 2) and teacher.num_classes == 2
    (tmp_path / "model.json").write_text(json.dumps({"classes": None, "input": None}))
    assert read_description(tmp_path / "model.json") == (None, (None, None, None))
