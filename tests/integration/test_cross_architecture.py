"""Distillation across architectures: CNN <-> ViT with feature methods, a timm student from a torchvision teacher."""

from __future__ import annotations

import json
import math

import pytest
import torch

from distill.engine.checkpoint import load_model
from tests.conftest import (
    FAST,
    ONE_EPOCH,
    method_args,
    read_summary,
    run_cli,
    small_vit_overrides,
)


def test_feature_method_between_a_cnn_and_a_vit_both_ways(digits_teacher, tmp_path):
    # CNN teacher -> ViT student: LeNet-5 maps joined to transformer tokens by connectors.
    out = tmp_path / "to_vit"
    small_student = small_vit_overrides("student")
    result = run_cli(
        "train", "distill=fitnet", "student=vit_tiny", *small_student, *method_args("fitnet", digits_teacher),
        *ONE_EPOCH, f"paths.output_dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_hint"] > 0 and math.isfinite(row["train_hint"]), row  # hints reached the tokens
    assert read_summary(out)["student"] == "vit_tiny"
    # ViT teacher -> CNN student, with attention transfer on the teacher's tokens as maps.
    # (the full width here: AT from the 32-wide ViT teacher diverged to NaN at step 16 of its first epoch)
    vit_teacher = tmp_path / "vit_teacher"
    small_teacher: list[str] = []
    result = run_cli(
        "teacher", "teacher=vit_tiny", *small_teacher, "trainer.epochs=1", *FAST, f"hydra.run.dir={vit_teacher}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "from_vit"
    result = run_cli(
        "train", "distill=at", "student=lenet5", "teacher=vit_tiny", *small_teacher,
        f"teacher.checkpoint={vit_teacher}", *ONE_EPOCH, f"paths.output_dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AttentionTransfer reads" in result.stdout + result.stderr
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_at"] > 0 and math.isfinite(row["train_at"]), row


def test_a_timm_student_distils_from_a_torchvision_teacher(digits_teacher, tmp_path):
    pytest.importorskip("timm")
    result = run_cli(
        "train", "student=timm", "student.name=resnet10t", *method_args("kd", digits_teacher), *ONE_EPOCH, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [p.parent for p in (tmp_path / "outputs" / "train").glob("*/*/summary.json")]
    assert read_summary(run)["student"] == "timm/resnet10t"
    model, spec, _, _ = load_model(run)  # rebuilt from the weights file alone, as eval/export do
    assert spec.name == "timm/resnet10t" and model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
