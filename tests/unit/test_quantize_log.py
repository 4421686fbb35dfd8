"""onnxruntime's quantizer logs a line per tensor at INFO through the root logger: the run's log file
gets them, the console does not."""

from __future__ import annotations

import io
import logging

import numpy as np
import torch

from distill.export.quantize import quantize_dynamic_int8, quantize_static_int8

NOISE = "Quantization parameters for tensor"


def _conv_onnx(path):
    """images (N, 1, 8, 8) -> Conv -> Relu -> Flatten -> MatMul -> logits (N, 3)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
        "b": np.zeros(4, np.float32),
        "m": rng.standard_normal((4 * 6 * 6, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("MatMul", ["f", "m"], ["logits"]),
    ]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph(nodes, "tiny", [x], [y], [numpy_helper.from_array(a, n) for n, a in weights.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_the_quantizers_info_lines_go_to_the_log_file_not_the_console(tmp_path):
    model = _conv_onnx(tmp_path / "model.onnx")
    root = logging.getLogger()
    console_text = io.StringIO()
    console, file = logging.StreamHandler(console_text), logging.FileHandler(tmp_path / "run.log")
    handlers, level = list(root.handlers), root.level
    root.handlers[:] = [console, file]
    root.setLevel(logging.INFO)
    try:
        quantize_static_int8(model, tmp_path / "static.onnx", torch.rand(16, 1, 8, 8))
        quantize_dynamic_int8(model, tmp_path / "dynamic.onnx")
        logging.info("a line of the run")  # the console still shows everything else
    finally:
        file.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    logged = (tmp_path / "run.log").read_text()
    assert NOISE in logged and "a line of the run" in logged
    assert NOISE not in console_text.getvalue() and "a line of the run" in console_text.getvalue()
    assert console.filters == []  # taken off again
    assert (tmp_path / "static.onnx").is_file() and (tmp_path / "dynamic.onnx").is_file()
