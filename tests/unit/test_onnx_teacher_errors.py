"""A bad ``model.json`` beside an ONNX teacher: a one-line UserError naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from distill.errors import UserError
from distill.models.onnx_teacher import OnnxTeacher, read_description


def _linear_onnx(path: Path, chw: tuple = (1, 2, 2), k: int = 2) -> Path:
    """A foreign ONNX graph, logits = flatten(x) @ W, with a free batch axis."""
    w = np.ones((int(np.prod(chw)), k), np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *chw])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", k])
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "linear", [x], [y], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


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
        OnnxTeacher(_linear_onnx(tmp_path / "model.onnx"))
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
    onnx_file = _linear_onnx(tmp_path / "model.onnx")
    (tmp_path / "model.json").write_text(json.dumps(GOOD))
    teacher = OnnxTeacher(onnx_file)
    assert teacher.classes == ["a", "b"] and teacher.input_shape == (1, 2, 2) and teacher.num_classes == 2
    (tmp_path / "model.json").write_text(json.dumps({"classes": None, "input": None}))
    assert read_description(tmp_path / "model.json") == (None, (None, None, None))
