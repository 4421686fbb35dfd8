"""Precision and compilation: bf16-mixed on a CPU, 16-mixed refused on one, torch.compile, and
the teacher's own precision."""

from __future__ import annotations

import pytest

from distill import api
from tests.conftest import (
    DIGITS,
    outputs_root,
    read_metrics,
    run_cli,
)


def test_bf16_mixed_trains_on_a_cpu(tmp_path):
    runs = {}
    for precision in ("32", "bf16-mixed"):
        out = tmp_path / precision
        args = ["teacher=mlp", *DIGITS, "trainer.epochs=2", f"trainer.precision={precision}", outputs_root(tmp_path)]
        summary = api.run("teacher", [*args, f"paths.output_dir={out}"])
        assert summary["test_acc"] > 0.7, (precision, summary["test_acc"])
        runs[precision] = read_metrics(out)
    # the same seed and data: only the arithmetic differs, and it shows in the losses
    assert runs["32"][0]["train_loss"] != runs["bf16-mixed"][0]["train_loss"]
    assert runs["32"][0]["train_loss"] == pytest.approx(runs["bf16-mixed"][0]["train_loss"], rel=0.05)


def test_16_mixed_is_refused_on_a_cpu(tmp_path):
    # trainer.device=cpu: refused on a machine with a GPU too (float16 autocast needs CUDA's grad scaler)
    refused = run_cli("teacher", "trainer.precision=16-mixed", "trainer.device=cpu", cwd=tmp_path)
    assert refused.returncode == 2 and "16-mixed needs a CUDA device" in refused.stderr
    assert not (tmp_path / "outputs").exists()


def test_torch_compile_trains_the_same_model(tmp_path):
    accs = {}
    for compiled in ("false", "true"):
        out = tmp_path / compiled
        args = ["teacher=mlp", "teacher.kwargs.hidden=[32]", *DIGITS, "trainer.epochs=2", outputs_root(tmp_path)]
        summary = api.run("teacher", [*args, f"trainer.compile={compiled}", f"paths.output_dir={out}"])
        accs[compiled] = summary["test_acc"]
        losses = [r["train_loss"] for r in read_metrics(out)]
        assert losses[1] < losses[0]
    assert accs["true"] == pytest.approx(accs["false"], abs=0.05)


def test_teacher_precision_keys_the_cache_and_stays_close(digits_teacher, tmp_path):
    summaries = {}
    for precision in ("32", "bf16-mixed"):
        args = ["teacher=lenet5", f"teacher.checkpoint={digits_teacher}", "student=mlp", *DIGITS, "trainer.epochs=1"]
        args += [f"trainer.teacher_precision={precision}", "trainer.teacher_backend=torch", outputs_root(tmp_path)]
        summaries[precision] = api.run("train", [*args, f"paths.output_dir={tmp_path / precision}"])
    a, b = summaries["32"]["teacher_cache"], summaries["bf16-mixed"]["teacher_cache"]
    assert a["status"] == b["status"] == "built" and a["path"] != b["path"], "one entry per teacher precision"
    soft = [read_metrics(tmp_path / p)[0]["train_soft"] for p in ("32", "bf16-mixed")]
    assert soft[0] != soft[1] and soft[0] == pytest.approx(soft[1], rel=0.05)
