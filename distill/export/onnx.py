"""ONNX export of a trained classifier, checked against PyTorch in onnxruntime."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distill.io import publish


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int = 18, exporter: str = "dynamo") -> Path:
    """Writes ``model`` as ONNX with a dynamic batch axis; input ``images``, output ``logits``.

    ``exporter``: ``dynamo`` (torch.export, the supported path) or ``torchscript`` (the older
    tracer: 4x faster for a resnet50 here, enough for a file only distill itself reads).
    The file appears whole or not at all (written beside the target, then renamed).
    """
    model = model.eval().cpu().float()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".onnx")
    os.close(fd)
    # the exporter's optimiser passes log every step at INFO, which would flood the run's log
    quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [q.level for q in quiet]
    try:
        batch = torch.export.Dim("batch", min=1)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            for q in quiet:
                q.setLevel(logging.WARNING)
            if exporter == "torchscript":
                torch.onnx.export(
                    model,
                    (example,),
                    tmp,
                    input_names=["images"],
                    output_names=["logits"],
                    dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                    opset_version=opset,
                    dynamo=False,
                )
                return publish(tmp, path)
            program = torch.onnx.export(
                model,
                (example,),
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
            program.save(tmp)
        publish(tmp, path)
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
        Path(tmp).unlink(missing_ok=True)
    return path


def check_onnx(model: nn.Module, path: Path, images: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch and onnxruntime logits on ``images`` (float, [0, 1]).

    Runs the whole batch and a single image, so the dynamic batch axis is exercised too.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = model.eval().cpu().float()
    worst = 0.0
    for batch in (images, images[:1]):
        with torch.no_grad():
            expected = model(batch).numpy()
        got = session.run(["logits"], {"images": batch.numpy().astype(np.float32)})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst
