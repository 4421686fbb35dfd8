"""The CUDA paths: float16 with the grad scaler, channels-last students, the teacher and the cache on
the GPU, worker processes feeding it. Marked ``gpu`` and run only where a CUDA device is
(``python -m pytest -q -m gpu``); on the CPU-only machines they are reported as skipped, not passed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from distill import api
from tests.conftest import DIGITS, method_args, outputs_root, read_metrics

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_16_mixed_trains_on_cuda_with_the_grad_scaler(tmp_path):
    runs = {}
    for precision in ("32", "16-mixed"):
        out = tmp_path / precision
        args = ["teacher=lenet5", *DIGITS, "trainer.epochs=3", "trainer.device=cuda", outputs_root(tmp_path)]
        summary = api.run("teacher", [*args, f"trainer.precision={precision}", f"paths.output_dir={out}"])
        assert json.loads((out / "env.json").read_text())["device"].startswith("cuda")
        rows = read_metrics(out)
        assert all(math.isfinite(r["train_loss"]) for r in rows), rows
        runs[precision] = summary["test_acc"]
    assert runs["16-mixed"] == pytest.approx(runs["32"], abs=0.1), runs


def test_a_student_distils_on_cuda_as_on_the_cpu(digits_teacher, tmp_path):
    """channels_last, worker processes and the teacher cache built on the GPU: the same student as
    on the CPU within floating-point and kernel differences."""
    accs = {}
    for device, extra in (("cpu", []), ("cuda", ["trainer.num_workers=2", "trainer.channels_last=true"])):
        out = tmp_path / device
        args = ["student=lenet5", *method_args("kd", digits_teacher), *DIGITS, "trainer.epochs=3", *extra]
        args += [f"trainer.device={device}", "trainer.teacher_precision=32", "trainer.teacher_backend=torch"]
        summary = api.run("train", [*args, outputs_root(tmp_path), f"paths.output_dir={out}"])
        assert summary["teacher_cache"]["used"], summary["teacher_cache"]
        assert json.loads((out / "env.json").read_text())["device"].startswith(device)
        accs[device] = summary["test_acc"]
    assert accs["cuda"] == pytest.approx(accs["cpu"], abs=0.05), accs


def test_the_automatic_teacher_precision_is_bf16_on_a_gpu_that_has_it(digits_teacher, tmp_path):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no native bf16")
    args = ["student=mlp", *method_args("kd", digits_teacher), *DIGITS, "trainer.epochs=1", "trainer.device=cuda"]
    args.append("trainer.teacher_backend=torch")  # the precision is what is automatic here
    summary = api.run("train", [*args, outputs_root(tmp_path), f"paths.output_dir={tmp_path / 'run'}"])
    assert summary["teacher_cache"]["used"]
    (meta_file,) = (tmp_path / "outputs" / "cache").glob("*/meta.json")  # the one entry this run built
    meta = json.loads(meta_file.read_text())
    assert meta["key"]["precision"] == "bf16-mixed", meta["key"]
