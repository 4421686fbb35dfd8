"""Runs on a realistic image folder (scripts/make_image_folder.py) with an unreadable file in it: refused
by default and skipped on request; streamed runs that resume exactly after kill -9 and train the same
in worker processes; the teacher cache built on streamed views and read back; model.json's
preprocessing reproducing test_acc with PIL, numpy and onnxruntime alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill import api
from distill.errors import UserError
from tests.conftest import ONE_EPOCH, outputs_root, write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = write_image_folder(tmp_path_factory.mktemp("photos"), 40, seed=0)
    (root / "train" / "3" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not the rest of a JPEG")
    return root


def test_an_unreadable_image_is_refused_by_default_and_skipped_on_request(folder, tmp_path):
    args = ["teacher=mlp", "dataset=imagefolder", f"dataset.root={folder}", "dataset.image_size=16", *ONE_EPOCH]
    with pytest.raises(UserError, match="broken.jpg.*dataset.on_bad_image=skip"):
        api.run("teacher", [*args, outputs_root(tmp_path)])
    summary = api.run("teacher", [*args, "dataset.on_bad_image=skip", outputs_root(tmp_path)])
    assert summary["skipped_images"]["count"] == 1
    assert str(folder / "train" / "3" / "broken.jpg") in summary["skipped_images"]["first"][0]


def _metrics(run: Path) -> list[dict]:
    import json

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("images_per_s", "epoch_s")} for r in rows]


@pytest.mark.slow
def test_a_streamed_run_killed_mid_epoch_resumes_to_the_same_metrics(folder, tmp_path):
    """Streaming from the files (in_memory=false) in 2 worker processes: kill -9 after a state saved
    within an epoch, resume, and end with exactly the metrics of the run left alone."""
    import os
    import subprocess
    import sys
    import time

    args = ["teacher", "teacher=lenet5", "dataset=imagefolder", f"dataset.root={folder}", "dataset.image_size=24",
            "dataset.in_memory=false", "dataset.on_bad_image=skip", "trainer.num_workers=2", "trainer.batch_size=8",
            "trainer.epochs=3", "trainer.save_every_steps=2", "trainer.threads=2", "trainer.progress=off",
            f"paths.root={tmp_path / 'outputs'}"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def launch(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "distill", *extra], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip

    alone = tmp_path / "alone"
    proc = launch(*args, f"hydra.run.dir={alone}")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    run = tmp_path / "killed"
    proc = launch(*args, f"hydra.run.dir={run}")
    state = run / "checkpoints" / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert proc.poll() is None, "the run ended before its first saved state"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not (run / "summary.json").exists(), "the run finished before the kill: nothing was tested"
    proc = launch("teacher", f"resume={run}")
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    assert _metrics(run) == _metrics(alone) and len(_metrics(run)) == 3


def test_a_streamed_run_trains_the_same_in_worker_processes(folder, tmp_path):
    args = ["teacher=lenet5", "dataset=imagefolder", f"dataset.root={folder}", "dataset.image_size=24",
            "dataset.in_memory=false", "dataset.on_bad_image=skip", "trainer.batch_size=8", *ONE_EPOCH]  # fmt: skip
    runs = [
        api.run("teacher", [*args, f"trainer.num_workers={w}", f"paths.output_dir={tmp_path / str(w)}"]) for w in (0, 2)
    ]
    assert _metrics(tmp_path / "0") == _metrics(tmp_path / "2")
    assert runs[0]["test_acc"] == runs[1]["test_acc"] and runs[0]["skipped_images"]["count"] == 1


@pytest.mark.slow  # the cache's rows against the live teacher are checked in the default suite (test_streaming_images)
def test_a_streamed_kd_run_builds_the_teacher_cache_in_workers_and_the_next_run_reads_it(folder, tmp_path):
    data = ["dataset=imagefolder", f"dataset.root={folder}", "dataset.image_size=16", "dataset.in_memory=false",
            "dataset.on_bad_image=skip", outputs_root(tmp_path)]  # fmt: skip
    api.run("teacher", ["teacher=lenet5", *data, *ONE_EPOCH, f"paths.output_dir={tmp_path / 'teacher'}"])
    args = [f"teacher.checkpoint={tmp_path / 'teacher'}", "student=mlp", "student.kwargs.hidden=[32]",
            "trainer.epochs=2", "trainer.num_workers=2", "trainer.batch_size=8", *data, *ONE_EPOCH[1:]]  # fmt: skip
    first, second = (api.run("train", [*args, f"paths.output_dir={tmp_path / str(i)}"]) for i in (0, 1))
    assert first["teacher_cache"]["status"] == "built" and second["teacher_cache"]["status"] == "hit"
    assert first["teacher_cache"]["views"] == 2 and first["teacher"] == "lenet5"  # the file's model, not teacher.name
    assert _metrics(tmp_path / "0") == _metrics(tmp_path / "1") and first["test_acc"] == second["test_acc"]


def test_model_json_says_how_to_feed_the_onnx_file_and_plain_pil_numpy_onnxruntime_score_the_test_acc(folder, tmp_path):
    """No distill code on the scoring side: the test images read with PIL as model.json's
    preprocessing says, scored by onnxruntime, give the run's test_acc exactly."""
    import json
    import math

    import numpy as np
    import onnxruntime as ort
    from PIL import Image

    run = tmp_path / "run"
    args = ["teacher=mlp", "dataset=imagefolder", f"dataset.root={folder}", "dataset.image_size=24",
            "dataset.on_bad_image=skip", *ONE_EPOCH, f"paths.output_dir={run}"]  # fmt: skip
    summary = api.run("teacher", args)
    api.run("export", [f"run={run}"])
    meta = json.loads((run / "model.json").read_text())
    recipe, classes = meta["preprocessing"], meta["classes"]
    short, side = recipe["resize_shorter_side"], recipe["center_crop"]
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    files = sorted((folder / "test").rglob("*.jpg"))
    right = 0
    for path in files:
        with Image.open(path) as img:
            width, height = img.size
            k = max([1] + [k for k in (2, 4, 8) if min(width, height) >= k * short])  # as jpeg_draft says
            if k > 1:
                img.draft("RGB", (math.ceil(width / k), math.ceil(height / k)))
            img = img.convert("RGB")
        size = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
        img = img.resize(size, Image.BILINEAR)
        top, left = round((size[1] - side) / 2), round((size[0] - side) / 2)
        x = np.asarray(img.crop((left, top, left + side, top + side)), np.float32).transpose(2, 0, 1)[None] / 255
        right += classes[int(session.run(None, {"images": x})[0].argmax())] == path.parent.name
    assert len(files) == 10 and right / len(files) == summary["test_acc"]
    assert (short, side) == (27, 24) and recipe["interpolation"].startswith("bilinear")
