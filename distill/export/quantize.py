"""int8 quantization of an exported model in onnxruntime, and how fast and how right it then is."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from distill.io import publish

log = logging.getLogger("distill")


class _Batches:
    """onnxruntime's ``CalibrationDataReader``: calibration images in batches of 64."""

    def __init__(self, images: np.ndarray, batch: int = 64) -> None:
        self.chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.chunks):
            return None
        self.i += 1
        return {"images": self.chunks[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


@contextlib.contextmanager
def _quantizer_info_to_file() -> Iterator[None]:
    """onnxruntime's quantizer logs through the root logger, at INFO, a line per tensor it leaves
    alone ("Quantization parameters for tensor ... not specified"): within this block those lines
    reach the run's log file only, not the console (its warnings still do)."""
    import onnxruntime.quantization

    folder = str(Path(onnxruntime.quantization.__file__).resolve().parent)

    def console_keeps(record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not str(Path(record.pathname).resolve()).startswith(folder)

    consoles = [h for h in logging.getLogger().handlers if not isinstance(h, logging.FileHandler)]
    for handler in consoles:
        handler.addFilter(console_keeps)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(console_keeps)


def quantize_static_int8(fp32: Path, out: Path, calibration: torch.Tensor) -> Path:
    """Static int8 quantization (QDQ, per-channel weights, MinMax activations calibrated on
    ``calibration``: float [0, 1] training images). The file appears whole or not at all."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    reader_cls = type("Reader", (_Batches, CalibrationDataReader), {})
    reader = reader_cls(calibration.numpy().astype(np.float32))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quant.") as tmp, _quantizer_info_to_file():
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        except Exception as e:  # noqa: BLE001 - pre-processing is an optimisation; quantize without it
            log.info("onnxruntime quantization pre-processing skipped (%s)", type(e).__name__)
            prepared = fp32
        target = Path(tmp) / out.name
        quantize_static(
            str(prepared),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
        publish(target, out)
    return out


def quantize_dynamic_int8(fp32: Path, out: Path) -> Path:
    """Dynamic int8 quantization (int8 weights, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quant.") as tmp, _quantizer_info_to_file():
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        except Exception as e:  # noqa: BLE001 - pre-processing is an optimisation
            log.info("onnxruntime quantization pre-processing skipped (%s)", type(e).__name__)
            prepared = fp32
        target = Path(tmp) / out.name
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8)
        publish(target, out)
    return out


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    """Top-1 accuracy of the ONNX model on uint8 images ``x`` with labels ``y``."""
    session = _session(path)
    correct = 0
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].float().div(255).numpy()
        logits = session.run(["logits"], {"images": xb})[0]
        correct += int((logits.argmax(1) == y[i : i + batch].numpy()).sum())
    return correct / len(y)


def ort_latency_ms(
    path: Path, images: torch.Tensor, repeats: int = 50, warmup: int = 10, threads: int = 1, batch: int = 1
) -> float:
    """Median latency per image at ``batch`` images per call (uint8 ``images``, repeated to fill the
    batch) in onnxruntime on ``threads`` CPU threads, after warm-up."""
    session = _session(path, threads)
    x = images[:batch]
    if len(x) < batch:
        x = x.repeat((batch + len(x) - 1) // len(x), 1, 1, 1)[:batch]
    feed = {"images": x.float().div(255).numpy()}
    for _ in range(warmup):
        session.run(["logits"], feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(["logits"], feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3 / batch)
