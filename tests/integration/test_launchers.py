"""Sweeps on Hydra's launchers and sweepers, run for real: joblib in parallel, Optuna searching."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import launch, run_cli

SMALL = ["student=mlp", "student.kwargs.hidden=[32]", "trainer.epochs=2", "trainer.progress=off"]


@pytest.mark.slow
def test_parallel_launcher_runs_every_member(tmp_path):
    sweep = tmp_path / "par"
    done = launch(
        "train",
        "-m",
        "hydra/launcher=parallel",
        "trainer.threads=1",
        "distill.alpha=0",
        *SMALL,
        "seed=0,1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(sweep.glob("*/summary.json"))
    assert len(runs) == 2 and {json.loads(p.read_text())["seed"] for p in runs} == {0, 1}
    assert (sweep / "sweep.csv").is_file()
    launcher = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]["launcher"]
    assert launcher["_target_"].endswith("JoblibLauncher") and launcher["n_jobs"] == 2


@pytest.mark.slow
def test_optuna_search_reports_its_best_trial(tmp_path):
    teacher = tmp_path / "teacher"
    args = ["teacher=lenet5", "trainer.epochs=1", "trainer.progress=off", f"hydra.run.dir={teacher}"]
    done = run_cli("teacher", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "opt"
    done = launch(
        "train",
        "-m",
        "hydra/sweeper=kd_search",
        "hydra.sweeper.n_trials=3",
        "teacher=lenet5",
        f"teacher.checkpoint={teacher}",
        *SMALL,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert len(trials) == 3
    best = max(trials, key=lambda s: s["val_acc"])
    assert result["best_value"] == best["val_acc"]  # what the stage returned is what Optuna maximised
    assert result["best_params"]["distill.temperature"] == best["temperature"]
    assert 1.0 <= best["temperature"] <= 10.0 and 0.1 <= best["alpha"] <= 0.95
    # a bad fixed value is still refused before the search starts
    done = run_cli("train", "-m", "hydra/sweeper=kd_search", "distill.temperature=-1", cwd=tmp_path)
    assert done.returncode == 2 and "temperature" in done.stderr and "Traceback" not in done.stderr


def test_a_diverged_member_fails_alone_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    # no gradient limit: with one, a step moves at most lr * grad_clip and the loss stays finite
    args = ["distill.alpha=0", *SMALL, "trainer.grad_clip=null", "optim.lr=1e12,0.01", f"hydra.sweep.dir={sweep}"]
    done = run_cli("train", "-m", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loss became" in done.stderr and "the sweep goes on" in done.stderr
    assert not (sweep / "0" / "summary.json").exists() and (sweep / "1" / "summary.json").is_file()
    # a single run that diverges is still an error
    done = run_cli("train", "distill.alpha=0", *SMALL, "trainer.grad_clip=null", "optim.lr=1e12", cwd=tmp_path)
    assert done.returncode == 2 and "loss became" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_optuna_records_a_diverged_trial_as_failed_and_goes_on(tmp_path):
    sweep = tmp_path / "opt"
    done = launch(
        "train",
        "-m",
        "hydra/sweeper=kd_search",
        "hydra.sweeper.n_trials=5",
        "optim.lr=choice(1e12,0.01)",
        "trainer.grad_clip=null",  # with a limit, lr 1e12 never reaches an infinite loss
        "distill.alpha=0",
        *SMALL,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loss became" in done.stderr  # at least one trial drew lr=1e12 and diverged
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert result["best_params"]["optim.lr"] == 0.01
