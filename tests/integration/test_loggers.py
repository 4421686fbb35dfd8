"""Runs reported to TensorBoard and MLflow, read back through their own readers; the Python API."""

from __future__ import annotations

import json

import pytest

from distill import api
from distill.engine.loggers import check_available
from distill.errors import UserError
from tests.conftest import FAST, run_cli

TINY = ["student=mlp", "student.kwargs.hidden=[32]", "trainer.epochs=2", "distill.alpha=0", *FAST]


def test_api_run_logs_to_tensorboard_and_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = api.run("train", [*TINY, "logger=[csv,tensorboard,mlflow]", f"paths.root={tmp_path / 'out'}"])
    assert summary["stage"] == "train"
    run_dir = tmp_path / "out" / "train"
    (summary_file,) = run_dir.glob("*/*/summary.json")
    assert json.loads(summary_file.read_text())["test_acc"] == summary["test_acc"]

    events = EventAccumulator(summary["loggers"]["tensorboard_dir"])
    events.Reload()
    val = [e.value for e in events.Scalars("val_acc")]
    rows = [json.loads(x) for x in (summary_file.parent / "metrics.jsonl").read_text().splitlines()]
    assert val == pytest.approx([r["val_acc"] for r in rows])

    info = summary["loggers"]["mlflow"]
    assert info["tracking_uri"] == f"sqlite:///{(tmp_path / 'out' / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=info["tracking_uri"])
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["distill.temperature"] == "4.0" and run.data.params["student.name"] == "mlp"
    history = client.get_metric_history(info["run_id"], "val_acc")
    assert [m.step for m in history] == [1, 2] and [m.value for m in history] == pytest.approx(val)
    assert run.data.metrics["summary.test_acc"] == pytest.approx(summary["test_acc"])
    assert "best.safetensors" in [a.path for a in client.list_artifacts(info["run_id"])]

    # the exported ONNX file joins the run's artifacts
    done = run_cli("export", f"run={summary_file.parent}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "model.onnx" in [a.path for a in client.list_artifacts(info["run_id"])]


def test_a_sweep_is_one_mlflow_experiment_with_a_run_per_member(tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    sweep = tmp_path / "sweep"
    loggers = "logger=[mlflow,tensorboard]"
    done = run_cli("train", "-m", *TINY, loggers, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'outputs' / 'mlflow.db').resolve()}")
    (experiment,) = [e for e in client.search_experiments() if e.name.startswith("distill-train sweep")]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    # TensorBoard reads the whole sweep folder: a run per member, each with its epochs
    mux = EventMultiplexer().AddRunsFromDirectory(str(sweep))
    mux.Reload()
    assert sorted(mux.Runs()) == ["0/tensorboard", "1/tensorboard"]
    for run in mux.Runs():
        assert [e.step for e in mux.Scalars(run, "val_acc")] == [1, 2]


def test_missing_tracker_names_its_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    (problem,) = check_available(["csv", "mlflow"])
    assert "pip install 'distill[mlflow]'" in problem
    with pytest.raises(UserError, match="distill.temprature"):
        api.run("train", ["distill.temprature=2"])
