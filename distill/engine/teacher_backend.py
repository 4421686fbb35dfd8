"""A frozen PyTorch teacher run in onnxruntime: the same logits, faster on CPUs.

Measured on this project's 2-core AVX2 CPU (float32, batch 64, 32 px, 2 threads; channels-last
PyTorch against onnxruntime's CPU provider, ``scripts/teacher_backend_speed.py``): resnet50
353 -> 528 images/s, resnet152 130 -> 185.
onnxruntime folds BatchNorm into the convolutions and fuses the activations, which eager
PyTorch does not. The teacher is exported once per weights file (the file name is its digest)
under the cache folder, and used only after onnxruntime's logits are checked against
PyTorch's on training images.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

import torch
from torch import nn

from distill import choices
from distill.export.onnx import export_onnx
from distill.io import atomic_write
from distill.models.onnx_teacher import OnnxTeacher

log = logging.getLogger("distill")

BACKENDS = choices.BACKENDS


def onnxruntime_teacher(
    teacher: nn.Module, digest: str, root: Path, images: torch.Tensor, threads: int | None
) -> OnnxTeacher | None:
    """``teacher`` as an onnxruntime session, or None (with the reason logged) when it cannot be.

    Args:
        teacher: the frozen model (any device; exported from a CPU float32 copy's graph).
        digest: the weights file's digest, naming the exported file ``<root>/onnx/<digest>.onnx``.
        images: a few float [0, 1] training images to compare both backends on.
        threads: onnxruntime's intra-op threads (None: onnxruntime's choice).
    """
    path = Path(root) / "onnx" / f"{digest[:24]}.onnx"
    refused = path.with_suffix(".refused")  # why an earlier run kept this teacher in PyTorch
    if refused.is_file():
        log.info(
            "teacher stays in PyTorch: %s (found by an earlier run; `distill cache clear` forgets it)",
            refused.read_text().strip(),
        )
        return None
    model = teacher.eval()
    example = images.cpu().float().contiguous()
    try:
        if not path.is_file():
            try:
                export_onnx(model, example[:2], path, exporter="torchscript")
            except Exception:  # noqa: BLE001 - the older tracer is gone or cannot trace this model
                export_onnx(model, example[:2], path)
            log.info("teacher exported for onnxruntime: %s", path)
        session = OnnxTeacher(path, threads=threads)
    except Exception as e:  # noqa: BLE001 - an exporter failure only means the PyTorch teacher is used
        why = f"onnx export failed ({(str(e).strip().splitlines() or [''])[0][:200]})"
        log.info("teacher stays in PyTorch: %s", why)
        atomic_write(refused, why)
        return None
    worst, scale = 0.0, 1.0
    with torch.no_grad():
        for batch in (example, example[:1]):  # the whole batch and one image: the batch axis is dynamic
            want = model(batch).float()
            worst = max(worst, float((session(batch) - want).abs().max()))
            scale = max(scale, float(want.abs().max()))
    if worst > 1e-4 * scale:
        why = f"onnxruntime's logits differ from PyTorch's by {worst:.2e} (logits up to {scale:.1f})"
        log.warning("teacher stays in PyTorch: %s", why)
        atomic_write(refused, why)
        return None
    log.info("teacher runs in onnxruntime (logits within %.1e of PyTorch)", worst)
    return session


def _cpu_signature(threads: int | None) -> str:
    """What a speed measurement holds for: this CPU's model and vector unit, threads, torch and onnxruntime."""
    import hashlib

    import onnxruntime

    model = next(
        (ln.split(":", 1)[1].strip() for ln in _cpuinfo().splitlines() if ln.startswith("model name")),
        platform.processor(),
    )
    parts = [model, torch.backends.cpu.get_cpu_capability(), str(threads or torch.get_num_threads())]
    parts += [torch.__version__, onnxruntime.__version__]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _images_per_s(run, batch: torch.Tensor, repeats: int = 3) -> float:
    """Median throughput of ``run(batch)`` over a few calls, after one warm-up call."""
    with torch.no_grad():
        run(batch)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(batch)
            times.append(time.perf_counter() - t0)
    return len(batch) / sorted(times)[len(times) // 2]


def faster_teacher_runtime(
    teacher: nn.Module, digest: str, root: Path, images: torch.Tensor, threads: int | None, channels_last: bool
) -> tuple[str, dict]:
    """Which runs this teacher faster on this CPU: onnxruntime in float32 or PyTorch in bf16 (a CPU
    with native bf16 makes the second a contender). Measured once per teacher, CPU, thread count and
    library versions, and remembered beside the exported teacher.

    Returns:
        ``"onnxruntime"`` or ``"bf16"``, and the measurement (images/s of each, where it was kept).
    """
    record = Path(root) / "onnx" / f"{digest[:24]}.{_cpu_signature(threads)}.speed.json"
    try:
        found = json.loads(record.read_text())
        if found.get("choice") in ("onnxruntime", "bf16"):
            return found["choice"], {**found, "record": str(record), "measured_now": False}
    except (OSError, ValueError, AttributeError):
        pass
    batch = images.cpu().float().contiguous()
    session = onnxruntime_teacher(teacher, digest, root, batch, threads)
    torch_batch = batch.contiguous(memory_format=torch.channels_last) if channels_last else batch

    def bf16(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return teacher(x)

    speeds = {"bf16_images_per_s": round(_images_per_s(bf16, torch_batch), 1)}
    if session is not None:
        speeds["onnxruntime_images_per_s"] = round(_images_per_s(session, batch), 1)
    ort = speeds.get("onnxruntime_images_per_s", 0.0)
    choice = "onnxruntime" if ort > speeds["bf16_images_per_s"] else "bf16"
    found = {"choice": choice, **speeds, "batch": len(batch), "threads": threads, "cpu": _cpu_signature(threads)}
    atomic_write(record, json.dumps(found, indent=2))
    return choice, {**found, "record": str(record), "measured_now": True}
