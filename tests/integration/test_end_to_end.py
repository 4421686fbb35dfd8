"""The product as a user runs it: train (teacher first), reuse, eval, export, sweep, report."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from distill.data.embedded import digits
from distill.engine.checkpoint import load_model, load_state
from tests.conftest import launch, run_cli

TINY = ["teacher=lenet5", "student=mlp", "student.kwargs.hidden=[64]", "trainer.threads=2", "trainer.progress=off"]


def _runs(root: Path, stage: str) -> list[Path]:
    return sorted(p.parent for p in (root / "outputs" / stage).glob("*/*/summary.json"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder in which `distill train` ran once, as a user types it, training its teacher first."""
    root = tmp_path_factory.mktemp("e2e")
    result = launch("train", *TINY, "trainer.epochs=3", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_train_writes_a_self_describing_run_folder(workdir):
    (run,) = _runs(workdir, "train")
    (teacher_run,) = _runs(workdir, "teacher")
    for name in (
        "config.yaml",
        ".hydra/config.yaml",
        "train.log",
        "env.json",
        "summary.json",
        "checkpoints/best.safetensors",
        "checkpoints/last.safetensors",
        "checkpoints/state.pt",
    ):
        assert (run / name).is_file(), name
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2, 3]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stage"] == "train" and summary["temperature"] == 4.0 and summary["alpha"] == 0.5
    for key in ("test_acc", "last_test_acc", "params", "train_images_per_s", "teacher_test_acc"):
        assert isinstance(summary[key], (int, float)), key
    # 3 epochs of a 3-epoch lenet5 teacher (0.54 here) into a 64-wide MLP: clearly above chance (0.1)
    assert summary["test_acc"] > 0.25 and summary["teacher_test_acc"] > 0.3, summary
    assert summary["params"] == 64 * 64 + 64 + 64 * 10 + 10
    assert summary["teacher_weights"] == str(teacher_run / "checkpoints" / "best.safetensors")
    env = json.loads((run / "env.json").read_text())
    assert {"python", "torch", "torchvision", "distill", "git_commit", "device"} <= set(env)
    state = load_state(run / "checkpoints" / "state.pt")
    assert state["epoch"] == 3 and "optimizer" in state
    model, spec, config, _ = load_model(run)
    assert spec.name == "mlp" and config["distill"]["temperature"] == 4.0
    assert spec.classes == [str(i) for i in range(10)]


def test_second_run_reuses_the_teacher(workdir):
    before = _runs(workdir, "teacher")
    # the same trainer.epochs: the teacher trained with the first run's recipe (3 epochs) is the one asked for
    result = run_cli("train", *TINY, "trainer.epochs=3", "distill.temperature=2", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _runs(workdir, "teacher") == before
    newest = max(_runs(workdir, "train"), key=lambda p: p.name)
    summary = json.loads((newest / "summary.json").read_text())
    assert summary["teacher_weights"].startswith(str(before[0]))


def test_eval_matches_the_training_summary(workdir):
    run = _runs(workdir, "train")[0]
    result = run_cli("eval", f"run={run}", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    ev = json.loads((run / "eval.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert ev["top1"] == pytest.approx(summary["test_acc"])
    assert ev["teacher_top1"] == pytest.approx(summary["teacher_test_acc"])
    assert 0 <= ev["teacher_agreement"] <= 1 and 0 <= ev["ece"] <= 1 and ev["top5"] >= ev["top1"]


def test_export_runs_in_onnxruntime_with_the_same_answers(workdir):
    run = _runs(workdir, "train")[0]
    result = run_cli("export", str(run), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((run / "model.json").read_text())
    assert meta["classes"] == [str(i) for i in range(10)]
    assert (meta["input"]["channels"], meta["input"]["height"], meta["input"]["width"]) == (1, 8, 8)
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    model, _, _, _ = load_model(run)
    images = digits().test_x.float() / 255
    for batch in (images[:1], images[:37], images):
        got = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
        with torch.no_grad():
            want = model(batch).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4


def test_int8_export_reports_accuracy_and_latency_before_after_and_the_teachers(workdir):
    run = _runs(workdir, "train")[0]
    result = run_cli("export", str(run), "quantize=int8", "output=" + str(run / "q" / "model.onnx"), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    q = run / "q" / "model.int8.onnx"
    assert q.is_file() and q.stat().st_size < (run / "q" / "model.onnx").stat().st_size
    rows = json.loads((run / "q" / "model.json").read_text())["int8"]["models"]
    assert [(r["model"].split()[0], r["weights"]) for r in rows] == [
        ("teacher", "float32"),
        ("student", "float32"),
        ("student", "int8"),
    ]
    fp32, int8 = rows[1]["test_acc"], rows[2]["test_acc"]
    assert abs(fp32 - int8) < 0.05, rows  # quantization costs little on a small MLP
    assert rows[1]["test_acc"] == pytest.approx(json.loads((run / "summary.json").read_text())["test_acc"], abs=0.01)
    assert all(r["latency_ms"] > 0 for r in rows)


def test_sweep_ends_with_a_table_and_report_reprints_it(workdir):
    result = run_cli("train", "-m", *TINY, "trainer.epochs=1", "distill.temperature=1,4", "seed=0,1", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep,) = (workdir / "outputs" / "multirun").glob("*/*")
    rows = (sweep / "sweep.csv").read_text().splitlines()
    assert rows[0].startswith("distill.temperature,runs,test_acc_mean,test_acc_std")
    assert len(rows) == 3 and all(r.split(",")[1] == "2" for r in rows[1:])
    assert (sweep / "sweep.png").stat().st_size > 1000
    assert "mean ± std over seeds" in result.stdout
    # the members read the data, measured the student's speed, loaded and described the teacher once
    # (the first member; the data also served the teacher it trained first), checked each seed's cache
    # entry against the teacher once (its builder), and every summary holds every figure
    from distill.engine import memo

    assert memo.hits() == {"data": 4, "speed": 3, "teacher": 3, "teacher_model": 3, "cache_checked": 2}
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert len(summaries) == 4 and len({(s["latency_ms"], s["teacher_test_acc"]) for s in summaries}) == 1
    assert all(s["test_acc"] is not None and s["params"] > 0 for s in summaries)
    again = run_cli("report", str(sweep), cwd=workdir)
    assert again.returncode == 0 and "4 runs" in again.stdout


def test_help_lists_stages_and_every_group(tmp_path):
    top = launch("--help", cwd=tmp_path)
    assert top.returncode == 0 and all(s in top.stdout for s in ("train", "teacher", "eval", "export", "report"))
    stage = launch("train", "--help", cwd=tmp_path)
    assert stage.returncode == 0
    # every group with its default and options, then every key with its default (issue 19's help)
    for text in (
        "teacher=resnet18",
        "student=mlp",
        "dataset=digits",
        "distill=kd",
        "optim=sgd",
        "sched=cosine",
        "trainer=default",
        "teacher=resnet152 student=mobilenet",
        "mnist5k",
        "imagefolder",
        "distill.temperature=4.0",
        "trainer.epochs=60",
        "`distill models`",
    ):
        assert text in stage.stdout, text


def test_imagefolder_student_and_a_teacher_of_other_classes(workdir, tmp_path):
    from PIL import Image

    rng = np.random.RandomState(0)
    for split, n in (("train", 12), ("val", 3)):
        for cls in ("cat", "dog house"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.randint(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / cls / f"{i}.png"
                )
    folder = ["dataset=imagefolder", f"dataset.root={tmp_path / 'imgs'}", "dataset.image_size=16"]
    alone = run_cli("train", *TINY, *folder, "distill.alpha=0", "trainer.epochs=1", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-3000:]
    (run,) = _runs(tmp_path, "train")
    assert json.loads((run / "summary.json").read_text())["dataset"] == "imgs"
    teacher = _runs(workdir, "teacher")[0]
    mismatch = run_cli("train", *TINY, *folder, f"teacher.checkpoint={teacher}", cwd=tmp_path)
    assert mismatch.returncode == 2 and "Traceback" not in mismatch.stderr
    assert "trained on 10 classes" in mismatch.stderr and "has 2" in mismatch.stderr
