"""int8 quantization of the teacher's ONNX file in onnxruntime: dynamic (weights int8, activations
quantized on the fly) and static (activation ranges calibrated on training images, QDQ)."""

from __future__ import annotations

import time

import torch

from distill.compress.base import Context, Made
from distill.export.quantize import quantize_dynamic_int8, quantize_static_int8


def candidates(ctx: Context, dynamic: bool, static: bool, calibration_images: int) -> list[Made]:
    """``params_from``: an int8 file holds the teacher's parameters (counted from the teacher)."""
    assert ctx.teacher_onnx is not None
    out = []
    if dynamic:
        start = time.perf_counter()
        path = quantize_dynamic_int8(ctx.teacher_onnx, ctx.work_dir / "teacher.int8-dynamic.onnx")
        out.append(
            Made(
                "int8 dynamic",
                "quantization",
                onnx=path,
                notes={"seconds": time.perf_counter() - start, "params_from": ctx.teacher},
            )
        )
    if static:
        start = time.perf_counter()
        g = torch.Generator().manual_seed(ctx.seed)
        x = ctx.data.train_x
        calib = x[torch.randperm(len(x), generator=g)[:calibration_images]].float().div(255)
        path = quantize_static_int8(ctx.teacher_onnx, ctx.work_dir / "teacher.int8-static.onnx", calib)
        out.append(
            Made(
                "int8 static",
                "quantization",
                onnx=path,
                notes={"seconds": time.perf_counter() - start, "params_from": ctx.teacher},
            )
        )
    return out
