"""Teachers known only by their outputs: an ONNX file in onnxruntime, precomputed logits, and the
teacher_backend that runs a PyTorch teacher in onnxruntime."""

from __future__ import annotations

import json

import pytest
import torch

from distill import api
from distill.data.embedded import digits
from distill.engine.checkpoint import load_model
from distill.engine.loop import predict
from distill.models.logits_teacher import write_logits_file
from tests.conftest import (
    ONE_EPOCH,
    copy_run,
    read_summary,
    run_cli,
)


def test_onnx_teacher_gives_the_same_soft_targets_as_its_pytorch_self(digits_teacher, tmp_path):
    teacher_run = copy_run(digits_teacher, tmp_path / "teacher")  # export writes into the run folder
    result = run_cli("export", str(teacher_run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    onnx_file = teacher_run / "model.onnx"
    result = run_cli(
        "train",
        "teacher=onnx",
        f"teacher.path={onnx_file}",
        "student=mlp",
        "student.kwargs.hidden=[32]",
        *ONE_EPOCH,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [p.parent for p in (tmp_path / "outputs" / "train").glob("*/*/summary.json")]
    summary = read_summary(run)
    assert summary["teacher"] == "onnx"
    assert summary["teacher_test_acc"] == pytest.approx(read_summary(teacher_run)["test_acc"], abs=1e-9)
    # eval compares with the ONNX teacher too (run in onnxruntime).
    result = run_cli("eval", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["teacher"] == "onnx" and evaluation["teacher_top1"] == summary["teacher_test_acc"]
    # A feature method cannot read an ONNX teacher's layers: refused before anything runs.
    result = run_cli("train", "teacher=onnx", f"teacher.path={onnx_file}", "distill=at", *ONE_EPOCH, cwd=tmp_path)
    assert result.returncode == 2 and "logits only" in result.stderr


def test_precomputed_logits_teacher(digits_teacher, tmp_path):
    model, spec, _, _ = load_model(digits_teacher)
    data = digits()
    path = write_logits_file(tmp_path / "logits.safetensors", predict(model, data.train_x), spec.classes)
    result = run_cli(
        "train",
        "teacher=logits",
        f"teacher.path={path}",
        "dataset.augment=none",
        "student=mlp",
        "student.kwargs.hidden=[32]",
        *ONE_EPOCH,
        f"paths.output_dir={tmp_path / 'from_logits'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = read_summary(tmp_path / "from_logits")
    assert summary["teacher"] == "logits" and "precomputed" in summary["teacher_cache"]["reason"]
    row = json.loads((tmp_path / "from_logits" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_soft"] > 0, "the file's logits were the soft targets"
    # Logits for another number of images are refused with both counts.
    bad = write_logits_file(tmp_path / "bad.safetensors", torch.zeros(7, 10), spec.classes)
    result = run_cli("train", "teacher=logits", f"teacher.path={bad}", "dataset.augment=none", *ONE_EPOCH, cwd=tmp_path)
    assert result.returncode == 2 and "7" in result.stderr and str(len(data.train_y)) in result.stderr


@pytest.mark.parametrize("precision", ["auto", "32"])
def test_a_teacher_in_onnxruntime_gives_pytorchs_numbers(digits_teacher, tmp_path, precision):
    """trainer.teacher_backend: the teacher exported once and run in onnxruntime trains the student
    as the PyTorch teacher does (floating-point noise only); a method reading layers keeps PyTorch.
    An explicit backend wins over ``teacher_precision=auto`` on every CPU (on one with native bf16,
    auto alone would pick bf16)."""

    common = ["teacher=lenet5", f"teacher.checkpoint={digits_teacher}", "student=mlp", "student.kwargs.hidden=[32]"]
    common += [*ONE_EPOCH, "trainer.epochs=2", "cache.enabled=false", f"paths.root={tmp_path / 'outputs'}"]
    runs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        # the PyTorch teacher in float32 too, so both sides compute the same numbers
        chosen = f"trainer.teacher_precision={precision if backend == 'onnxruntime' else 32}"
        summary = api.run("train", [*common, f"trainer.teacher_backend={backend}", f"paths.output_dir={out}", chosen])
        assert summary["teacher_backend"] == backend
        runs[backend] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert list((tmp_path / "outputs" / "cache" / "onnx").glob("*.onnx")), "the exported teacher is kept"
    for a, b in zip(runs["torch"], runs["onnxruntime"]):
        assert a["train_soft"] == pytest.approx(b["train_soft"], rel=1e-4)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    layers = api.run("train", [*common, "distill=rkd", f"paths.output_dir={tmp_path / 'rkd'}"])
    assert layers["teacher_backend"] == "torch"
