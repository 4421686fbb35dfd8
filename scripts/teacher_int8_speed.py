"""Would an int8 onnxruntime teacher pay here? Throughput and soft-target drift of one trained teacher in
onnxruntime float32, onnxruntime int8 (static QDQ quantization calibrated on 256 training images, distill's
own ``quantize_static_int8``) and PyTorch bf16 channels-last, at batch 64.

    python scripts/teacher_int8_speed.py RUN_DIR [--dataset mnist5k|synthetic] [--threads 2]

RUN_DIR: a teacher run folder (or its weights file). Prints images/s of each runtime, and on the val split
the top-1 agreement with float32 onnxruntime, the mean KL of the soft targets at T=1 and T=4 and (for a
real dataset) the top-1 accuracy. Nothing is kept: the ONNX files go to a temporary folder.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from distill.data import embedded
from distill.engine.checkpoint import read_weights, spec_of, weights_path
from distill.export.onnx import export_onnx
from distill.export.quantize import quantize_static_int8
from distill.models.onnx_teacher import OnnxTeacher
from distill.models.spec import build_loaded


def images_per_s(run, x: torch.Tensor, repeats: int = 5) -> float:
    run(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return len(x) / sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--dataset", choices=["mnist5k", "synthetic"], default="mnist5k")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = weights_path(args.run)
    tensors, meta = read_weights(path)
    spec = spec_of(meta, path)
    model = build_loaded(spec, tensors, path).eval().requires_grad_(False)
    if args.dataset == "mnist5k":
        data = embedded.mnist5k(augment="none")
        calib, val, labels = data.train_x[:256].float().div(255), data.val_x.float().div(255), data.val_y
    else:  # random images of the teacher's input size: speed and drift only
        g = torch.Generator().manual_seed(0)
        shape = (spec.in_channels, *spec.image_size)
        calib, val, labels = torch.rand(256, *shape, generator=g), torch.rand(256, *shape, generator=g), None
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, calib[:2], Path(tmp) / "teacher.onnx", exporter="torchscript")
        int8 = quantize_static_int8(fp32, Path(tmp) / "teacher.int8.onnx", calib)
        runtimes = {"onnxruntime float32": OnnxTeacher(fp32, threads=args.threads),
                    "onnxruntime int8": OnnxTeacher(int8, threads=args.threads)}  # fmt: skip
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)

        def bf16(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                return cl(x.contiguous(memory_format=torch.channels_last)).float()

        runtimes["PyTorch bf16"] = bf16
        batch = calib[:64]
        with torch.no_grad():
            ref = runtimes["onnxruntime float32"](val).float()
            for name, run in runtimes.items():
                logits = run(val).float()
                line = f"{name:<20} {images_per_s(run, batch):8.0f} img/s"
                line += f"  top-1 agreement {(logits.argmax(1) == ref.argmax(1)).float().mean():.4f}"
                for t in (1, 4):
                    kl = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(ref / t, 1), log_target=True,
                                  reduction="batchmean")  # fmt: skip
                    line += f"  KL(T={t}) {kl:.2e}"
                if labels is not None:
                    line += f"  val top-1 {(logits.argmax(1) == labels).float().mean():.4f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
