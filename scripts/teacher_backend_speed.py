"""Teacher inference in PyTorch against onnxruntime (``trainer.teacher_backend``), on this machine.

    python scripts/teacher_backend_speed.py [--models resnet50 resnet152] [--threads 2] [--batch 64] [--size 32]

Each model (random weights, 10 classes, eval mode) is exported the way ``distill train`` exports
a teacher, then both backends are timed on the same random batch, interleaved, after warm-up:
PyTorch float32 in channels-last (distill's default) and in the default memory format, and
onnxruntime's CPU provider. Prints images/s (median of the repeats) and the largest difference
of the logits.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from distill.export.onnx import export_onnx
from distill.models.onnx_teacher import OnnxTeacher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50", "resnet152"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        "| model | PyTorch img/s | PyTorch channels-last img/s | onnxruntime img/s | ratio "
        "| largest difference of the logits |"
    )
    print("|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        model = torchvision.models.get_model(name, num_classes=10).eval().requires_grad_(False)
        x = torch.rand(args.batch, 3, args.size, args.size)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            path = export_onnx(model, x[:2], Path(tmp) / "teacher.onnx", exporter="torchscript")
            export_s = time.perf_counter() - t0
            ort = OnnxTeacher(path, threads=args.threads)
            cl = model.to(memory_format=torch.channels_last)
            xcl = x.contiguous(memory_format=torch.channels_last)
            plain = torchvision.models.get_model(name, num_classes=10).eval().requires_grad_(False)
            plain.load_state_dict(model.state_dict())
            runs = {
                "torch": lambda m=plain, x=x: m(x),
                "torch_cl": lambda m=cl, x=xcl: m(x),
                "ort": lambda m=ort, x=x: m(x),
            }
            times: dict[str, list[float]] = {k: [] for k in runs}
            with torch.inference_mode():
                for f in runs.values():
                    f()
                for _ in range(args.repeats):
                    for k, f in runs.items():
                        t = time.perf_counter()
                        f()
                        times[k].append(time.perf_counter() - t)
                want = runs["torch_cl"]()
                diff = float((runs["ort"]() - want).abs().max())
                scale = float(want.abs().max())  # random deep nets give large logits: compare relatively
        ips = {k: args.batch / statistics.median(v) for k, v in times.items()}
        print(
            f"| {name} | {ips['torch']:.0f} | {ips['torch_cl']:.0f} | {ips['ort']:.0f} | "
            f"{ips['ort'] / ips['torch_cl']:.2f}x | {diff:.1e} of logits up to {scale:.1e} "
            f"(export {export_s:.1f} s) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
