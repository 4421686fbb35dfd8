"""How to train: the typed form of the ``trainer`` config group, and what the hardware does fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix maths natively (so bf16 inference is faster, not emulated)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


@dataclass
class TrainerSettings:
    """How to train: the ``trainer`` config group's schema (types checked when a config is composed;
    the values and their meaning are in ``conf/trainer/default.yaml``), in the same key order."""

    epochs: int = 60  # as conf/trainer/default.yaml (the teacher stage sets 20 in conf/teacher.yaml)
    batch_size: int = 64
    device: str = "auto"
    precision: str = "32"
    teacher_precision: str = "auto"
    teacher_backend: str = "auto"
    num_workers: int = 0
    compile: bool = False
    channels_last: bool = True
    bn_recalibrate: bool = True
    bn_recalibrate_batches: int = 10
    eval_batch_size: int = 512
    threads: int | None = None
    progress: str = "auto"
    log_every_s: float = 30.0
    grad_clip: float | None = 1.0
    mix: str = "none"
    mix_alpha: float = 1.0
    save_every_steps: int = 0
    select: str = "one_se"

    def __post_init__(self) -> None:
        # `trainer.precision=32` on the command line arrives as a number
        self.precision, self.teacher_precision = str(self.precision), str(self.teacher_precision)

    def teacher_autocast(self) -> str:
        """The teacher's inference precision: ``auto`` is bf16 where the hardware computes it natively
        (CPUs with AVX512-BF16 or AMX, CUDA GPUs with bf16), else the student's precision. An explicit
        ``teacher_backend=onnxruntime`` wins over the automatic choice: onnxruntime runs float32."""
        if self.teacher_precision != "auto":
            return self.teacher_precision
        if self.teacher_backend == "onnxruntime":
            return "32"
        return "bf16-mixed" if fast_bf16(self.torch_device()) else self.precision

    def torch_device(self) -> torch.device:
        import torch  # here, so that reading the config schema costs no torch import

        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)
