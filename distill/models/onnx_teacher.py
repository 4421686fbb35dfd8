"""A black-box teacher given only as an ONNX file, run in onnxruntime.

The file is expected to follow ``distill export``'s convention: one float32 NCHW input of images
in [0, 1] with the normalisation inside the graph, and one output of logits (batch, classes).
``NAME.json`` beside ``NAME.onnx`` (``model.json`` for ``model.onnx``, as the export writes it)
gives the class names and the input shape; without it they come from the graph's shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill.errors import UserError

# onnxruntime's element types that take images, and the numpy type each is fed.
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _dim(value: Any) -> int | None:
    """A static dimension of an onnxruntime shape, or None for a symbolic or unknown one."""
    return value if isinstance(value, int) and value > 0 else None


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".rstrip(": ")


# A model.json is a few kilobytes (21k ImageNet class names are under 1 MB): a bigger file is not one.
_MAX_JSON_BYTES = 16 * 2**20
# Input sides beyond this are a typo, and probing a graph with such a zero image would exhaust memory.
_MAX_SIDE = 16384


def _whole(value: Any, limit: int) -> bool:
    # bool is an int subclass: "channels": true must not pass as 1.
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= limit


def read_description(meta_path: Path) -> tuple[list[str] | None, tuple[int | None, int | None, int | None]]:
    """(classes, input channels/height/width) from a model.json; None where a field is absent or null.

    Raises:
        UserError: in one line naming the file (and the key) for a file that is not JSON, is nested
            too deeply or too big, or has a field of the wrong type.
    """
    invalid = f"{meta_path} is not a valid model.json"
    try:
        size = meta_path.stat().st_size
        if size > _MAX_JSON_BYTES:
            raise UserError(f"{invalid} ({size / 2**20:.0f} MB; the file distill export writes is a few KB)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except RecursionError:  # json nests by recursion: [[[[...]]]] 100k deep
        raise UserError(f"{invalid} (nested too deeply)") from None
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError and UnicodeDecodeError
        raise UserError(f"{invalid} ({_one_line(e)})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{invalid} (an object {{...}} with classes and input is expected, got {type(meta).__name__})")
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise UserError(f"{meta_path}: classes must be a non-empty list of names (strings), got {_short(classes)}")
    size_node = meta.get("input")
    if size_node is None:
        size_node = {}
    if not isinstance(size_node, dict):
        raise UserError(
            f"{meta_path}: input must be an object with channels, height and width, got {_short(size_node)}"
        )
    shape = []
    for key, limit in (("channels", 4096), ("height", _MAX_SIDE), ("width", _MAX_SIDE)):
        value = size_node.get(key)
        if value is not None and not _whole(value, limit):
            raise UserError(f"{meta_path}: input.{key} must be a whole number from 1 to {limit}, got {_short(value)}")
        shape.append(value)
    return classes, (shape[0], shape[1], shape[2])


def _short(value: Any) -> str:
    """A JSON value as one short line for an error message."""
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (RecursionError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


class OnnxTeacher(nn.Module):
    """Teacher logits from an ONNX model: float [0, 1] NCHW tensors in, float32 logits out.

    It has no parameters, so ``requires_grad_``, ``eval`` and ``to`` change nothing; outputs come
    back on the input's device, without autograd history.

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime's intra-op threads on CPU; None lets onnxruntime choose.

    Raises:
        UserError: the file is missing, is not a valid ONNX model, does not take one image
            tensor, or disagrees with its JSON description.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"teacher ONNX file {self.path} does not exist")
        self.session = self._open(threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise UserError(
                f"{self.path} must take one image tensor and return logits, it has inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
            )
        inp = inputs[0]
        if inp.type not in _INPUT_TYPES or len(inp.shape) != 4:
            raise UserError(
                f"{self.path} takes {inp.type} of shape {inp.shape}; a teacher takes float NCHW images (4 dimensions)"
            )
        self._input_name, self._dtype = inp.name, _INPUT_TYPES[inp.type]
        out = next((o for o in outputs if o.name == "logits"), outputs[0])
        self._output_name = out.name
        self._batch = _dim(inp.shape[0])  # a graph exported without a dynamic batch axis takes only this many
        graph_shape = tuple(_dim(d) for d in inp.shape[1:])
        graph_classes = _dim(out.shape[-1]) if len(out.shape) == 2 else None
        self._input_shape, self._classes, self._num_classes = self._describe(graph_shape, graph_classes)
        if self._num_classes is None and None not in self._input_shape:
            self._num_classes = int(self(torch.zeros(1, *self._input_shape)).shape[-1])

    def _open(self, threads: int | None) -> Any:
        import onnx
        import onnxruntime as ort

        try:
            onnx.checker.check_model(str(self.path))
        except Exception as e:  # a protobuf DecodeError, onnx's ValidationError, ...
            raise UserError(f"{self.path} is not a valid ONNX model ({_one_line(e)})") from e
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # A teacher's call alternates with the student's step: onnxruntime's threads must not spin
        # on the cores (their default, waiting for the next call) while PyTorch trains on them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / NotImplemented
            raise UserError(f"onnxruntime cannot run {self.path} ({_one_line(e)})") from e

    def _describe(
        self, graph_shape: tuple[int | None, ...], graph_classes: int | None
    ) -> tuple[tuple[int | None, ...], list[str] | None, int | None]:
        """(input C, H, W; classes; number of classes) from the JSON beside the file and the graph."""
        meta_path = self.path.with_suffix(".json")
        if not meta_path.is_file():
            return graph_shape, None, graph_classes
        classes, shape = read_description(meta_path)
        shape = tuple(m if m is not None else g for m, g in zip(shape, graph_shape))
        problems = [
            f"input {name} {m} in the JSON but {g} in the graph"
            for name, m, g in zip(("channels", "height", "width"), shape, graph_shape)
            if None not in (m, g) and m != g
        ]
        if classes is not None and graph_classes is not None and len(classes) != graph_classes:
            problems.append(f"{len(classes)} classes in the JSON but {graph_classes} outputs in the graph")
        if problems:
            raise UserError(f"{meta_path} does not describe {self.path.name}: {'; '.join(problems)}")
        return shape, classes, len(classes) if classes is not None else graph_classes

    @property
    def classes(self) -> list[str] | None:
        """Class names in output order, when the JSON beside the file gives them."""
        return None if self._classes is None else list(self._classes)

    @property
    def num_classes(self) -> int | None:
        """Logits per image; None only when neither the JSON nor the graph tells."""
        return self._num_classes

    @property
    def input_shape(self) -> tuple[int | None, int | None, int | None]:
        """(channels, height, width) the model takes; None for a dimension the graph leaves free."""
        return self._input_shape  # type: ignore[return-value]

    def check_input(self, channels: int, height: int, width: int) -> None:
        """Raises a one-line UserError when the dataset's images do not fit the model's input."""
        want = self._input_shape
        if all(w is None or w == g for w, g in zip(want, (channels, height, width))):
            return
        shown = "x".join("?" if d is None else str(d) for d in want)
        raise UserError(
            f"teacher {self.path.name} takes {shown} (channels x height x width) images but the dataset has "
            f"{channels}x{height}x{width}; export the teacher for this dataset's image shape"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) as float32 on ``x``'s device for images ``x`` (N, C, H, W) in [0, 1]."""
        if x.dim() != 4:
            raise ValueError(f"OnnxTeacher takes NCHW images, got shape {tuple(x.shape)}")
        images = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy(), dtype=self._dtype)
        step = self._batch or len(images)
        parts = []
        for start in range(0, len(images), max(step, 1)):
            chunk = images[start : start + step]
            short = step - len(chunk)
            if short:  # a fixed-batch graph: pad the last chunk, drop the padding's logits
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), chunk.dtype)])
            out = self.session.run([self._output_name], {self._input_name: chunk})[0]
            parts.append(out[: len(out) - short])
        logits = np.concatenate(parts) if parts else np.zeros((0, self._num_classes or 0), np.float32)
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, input_shape={self._input_shape}, num_classes={self._num_classes}"
