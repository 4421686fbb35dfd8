"""Every distillation method through the real CLI, and the multi-model and black-box set-ups."""

import json
import math
from pathlib import Path

import pytest
import torch

from distill import config_dir
from distill.data.embedded import digits
from distill.engine.checkpoint import load_model, read_weights
from distill.engine.loop import predict
from distill.models.logits_teacher import write_logits_file
from tests.conftest import FAST, copy_run, run_cli

METHODS = sorted(p.stem for p in (Path(config_dir()) / "distill").glob("*.yaml"))
LENET5_PARAMS = 61_706  # the student's own parameters: connectors and heads are not saved with it
ONE_EPOCH = ["trainer.epochs=1", *FAST]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture
def teacher_run(digits_teacher) -> Path:
    """The session's LeNet-5 digits teacher (4 epochs); these tests only read it."""
    return digits_teacher


def _method_args(name: str, teacher: Path) -> list[str]:
    if name in ("online", "mutual"):  # peers from scratch: no trained teacher
        return ["teacher=lenet5"]
    args = ["teacher=lenet5", f"teacher.checkpoint={teacher}"]
    if name == "multi_teacher":
        args.append(f"distill.teachers=[{teacher}]")
    return args


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_through_the_cli(method, teacher_run, tmp_path):
    result = run_cli(
        "train", f"distill={method}", "student=lenet5", *_method_args(method, teacher_run), *ONE_EPOCH, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [p.parent for p in (tmp_path / "outputs" / "train").glob("*/*/summary.json")]
    summary = _summary(run)
    assert 0.0 <= summary["test_acc"] <= 1.0
    assert summary["params"] == LENET5_PARAMS
    tensors, _ = read_weights(run / "checkpoints" / "best.safetensors")
    assert sum(t.numel() for t in tensors.values() if t.is_floating_point()) >= LENET5_PARAMS
    assert all(k.startswith(("net.", "mean", "std")) for k in tensors), sorted(tensors)[:5]
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert all(math.isfinite(v) for k, v in row.items() if k.startswith("train_")), row
    if summary["method"] is not None:  # the method's own terms are logged per epoch
        assert any(
            k.startswith("train_") and k not in ("train_loss", "train_acc", "train_hard", "train_soft") for k in row
        ), row
    if method in ("online", "mutual"):
        assert summary["teacher_weights"] is None and summary["teacher_test_acc"] is not None


# a small ViT (2 layers, 32 wide): the same tokens and taps as the full width, at a fraction of the time
SMALL_VIT = ["kwargs.num_layers=2", "kwargs.num_heads=2", "kwargs.hidden_dim=32", "kwargs.mlp_dim=64"]


def test_feature_method_between_a_cnn_and_a_vit_both_ways(teacher_run, tmp_path):
    # CNN teacher -> ViT student: LeNet-5 maps joined to transformer tokens by connectors.
    out = tmp_path / "to_vit"
    small_student = [f"student.{k}" for k in SMALL_VIT]
    result = run_cli(
        "train", "distill=fitnet", "student=vit_tiny", *small_student, *_method_args("fitnet", teacher_run),
        *ONE_EPOCH, f"paths.output_dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_hint"] > 0 and math.isfinite(row["train_hint"]), row  # hints reached the tokens
    assert _summary(out)["student"] == "vit_tiny"
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


def test_a_wrong_layer_name_fails_at_once_listing_the_layers(teacher_run, tmp_path):
    result = run_cli(
        "train",
        "distill=fitnet",
        "student=lenet5",
        "distill.student_layers=[net.featurs.3]",
        *_method_args("fitnet", teacher_run),
        *ONE_EPOCH,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "no layer 'net.featurs.3'" in result.stderr and "net.features.3" in result.stderr
    assert "distill inspect" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_inspect_lists_layers_shapes_and_the_auto_taps(tmp_path):
    result = run_cli("inspect", "teacher=resnet18", "dataset=digits", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in ("net.layer4", "512x1x1", "auto", "head (input)", "net.fc"):
        assert text in result.stdout, text
    assert not (tmp_path / "outputs").exists()


def test_onnx_teacher_gives_the_same_soft_targets_as_its_pytorch_self(teacher_run, tmp_path):
    teacher_run = copy_run(teacher_run, tmp_path / "teacher")  # export writes into the run folder
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
    summary = _summary(run)
    assert summary["teacher"] == "onnx"
    assert summary["teacher_test_acc"] == pytest.approx(_summary(teacher_run)["test_acc"], abs=1e-9)
    # eval compares with the ONNX teacher too (run in onnxruntime).
    result = run_cli("eval", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["teacher"] == "onnx" and evaluation["teacher_top1"] == summary["teacher_test_acc"]
    # A feature method cannot read an ONNX teacher's layers: refused before anything runs.
    result = run_cli("train", "teacher=onnx", f"teacher.path={onnx_file}", "distill=at", *ONE_EPOCH, cwd=tmp_path)
    assert result.returncode == 2 and "logits only" in result.stderr


def test_precomputed_logits_teacher(teacher_run, tmp_path):
    model, spec, _, _ = load_model(teacher_run)
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
    summary = _summary(tmp_path / "from_logits")
    assert summary["teacher"] == "logits" and "precomputed" in summary["teacher_cache"]["reason"]
    row = json.loads((tmp_path / "from_logits" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["train_soft"] > 0, "the file's logits were the soft targets"
    # Logits for another number of images are refused with both counts.
    bad = write_logits_file(tmp_path / "bad.safetensors", torch.zeros(7, 10), spec.classes)
    result = run_cli("train", "teacher=logits", f"teacher.path={bad}", "dataset.augment=none", *ONE_EPOCH, cwd=tmp_path)
    assert result.returncode == 2 and "7" in result.stderr and str(len(data.train_y)) in result.stderr


def test_mixup_and_cutmix_train_teacher_and_student_on_the_same_batch(teacher_run, tmp_path):
    # Mixed soft targets reach every cross-entropy term: the student's, online peers', BYOT heads'.
    for mix, method in (("mixup", "kd"), ("cutmix", "mutual"), ("mixup", "byot")):
        out = tmp_path / f"{mix}_{method}"
        result = run_cli(
            "train",
            f"trainer.mix={mix}",
            f"distill={method}",
            "student=lenet5",
            *_method_args(method, teacher_run),
            *ONE_EPOCH,
            f"paths.output_dir={out}",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        summary = _summary(out)
        # the teacher saw the mixed batch itself: it ran live, never from views cached before mixing
        if method == "kd":
            assert summary["teacher_cache"] == {
                "used": False,
                "reason": f"trainer.mix={mix} mixes images after the views are drawn",
            }
        row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        soft = {
            k: v
            for k, v in row.items()
            if k.startswith("train_") and k not in ("train_loss", "train_acc", "train_hard")
        }
        assert soft and all(v > 0 and math.isfinite(v) for v in soft.values()), row  # the mixed soft targets


def test_born_again_chain_runs_each_generation_from_the_last(teacher_run, tmp_path):
    result = run_cli(
        "chain",
        "chain.models=[lenet5,lenet5,lenet5]",
        "teacher=lenet5",
        f"teacher.checkpoint={teacher_run}",
        *ONE_EPOCH,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (chain,) = list((tmp_path / "outputs" / "chain").glob("*/*/chain.json"))
    steps = json.loads(chain.read_text())["steps"]
    assert [s["model"] for s in steps] == ["lenet5"] * 3
    gen1, gen2 = Path(steps[1]["run"]), Path(steps[2]["run"])
    assert _summary(gen2)["teacher_weights"] == str((gen1 / "checkpoints" / "best.safetensors").resolve())


def test_a_timm_student_distils_from_a_torchvision_teacher(teacher_run, tmp_path):
    pytest.importorskip("timm")
    result = run_cli(
        "train", "student=timm", "student.name=resnet10t", *_method_args("kd", teacher_run), *ONE_EPOCH, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [p.parent for p in (tmp_path / "outputs" / "train").glob("*/*/summary.json")]
    assert _summary(run)["student"] == "timm/resnet10t"
    model, spec, _, _ = load_model(run)  # rebuilt from the weights file alone, as eval/export do
    assert spec.name == "timm/resnet10t" and model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("precision", ["auto", "32"])
def test_a_teacher_in_onnxruntime_gives_pytorchs_numbers(teacher_run, tmp_path, precision):
    """trainer.teacher_backend: the teacher exported once and run in onnxruntime trains the student
    as the PyTorch teacher does (floating-point noise only); a method reading layers keeps PyTorch.
    An explicit backend wins over ``teacher_precision=auto`` on every CPU (on one with native bf16,
    auto alone would pick bf16)."""
    from distill import api

    common = ["teacher=lenet5", f"teacher.checkpoint={teacher_run}", "student=mlp", "student.kwargs.hidden=[32]"]
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
