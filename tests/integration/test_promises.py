"""What the README promises about settings that had no test: each run for real, in this process
(``distill.cli.main``/``api.run``), on digits with tiny models; signals go through a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from distill import api
from distill.engine.checkpoint import load_state
from tests.conftest import FAST, run_cli

DIGITS = ["dataset=digits", *FAST]


def _root(tmp_path: Path) -> str:
    return f"paths.root={tmp_path / 'outputs'}"


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def teacher(digits_teacher) -> Path:
    """The session's LeNet-5 digits teacher (4 epochs); these tests only read it."""
    return digits_teacher


def test_bf16_mixed_trains_on_a_cpu(tmp_path):
    runs = {}
    for precision in ("32", "bf16-mixed"):
        out = tmp_path / precision
        args = ["teacher=mlp", *DIGITS, "trainer.epochs=2", f"trainer.precision={precision}", _root(tmp_path)]
        summary = api.run("teacher", [*args, f"paths.output_dir={out}"])
        assert summary["test_acc"] > 0.7, (precision, summary["test_acc"])
        runs[precision] = _metrics(out)
    # the same seed and data: only the arithmetic differs, and it shows in the losses
    assert runs["32"][0]["train_loss"] != runs["bf16-mixed"][0]["train_loss"]
    assert runs["32"][0]["train_loss"] == pytest.approx(runs["bf16-mixed"][0]["train_loss"], rel=0.05)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a CUDA device, 16-mixed is accepted")
def test_16_mixed_is_refused_without_a_gpu(tmp_path):
    refused = run_cli("teacher", "trainer.precision=16-mixed", cwd=tmp_path)
    assert refused.returncode == 2 and "16-mixed needs a CUDA device" in refused.stderr


def test_torch_compile_trains_the_same_model(tmp_path):
    accs = {}
    for compiled in ("false", "true"):
        out = tmp_path / compiled
        args = ["teacher=mlp", "teacher.kwargs.hidden=[32]", *DIGITS, "trainer.epochs=2", _root(tmp_path)]
        summary = api.run("teacher", [*args, f"trainer.compile={compiled}", f"paths.output_dir={out}"])
        accs[compiled] = summary["test_acc"]
        losses = [r["train_loss"] for r in _metrics(out)]
        assert losses[1] < losses[0]
    assert accs["true"] == pytest.approx(accs["false"], abs=0.05)


def test_teacher_precision_keys_the_cache_and_stays_close(teacher, tmp_path):
    summaries = {}
    for precision in ("32", "bf16-mixed"):
        args = ["teacher=lenet5", f"teacher.checkpoint={teacher}", "student=mlp", *DIGITS, "trainer.epochs=1"]
        args += [f"trainer.teacher_precision={precision}", "trainer.teacher_backend=torch", _root(tmp_path)]
        summaries[precision] = api.run("train", [*args, f"paths.output_dir={tmp_path / precision}"])
    a, b = summaries["32"]["teacher_cache"], summaries["bf16-mixed"]["teacher_cache"]
    assert a["status"] == b["status"] == "built" and a["path"] != b["path"], "one entry per teacher precision"
    soft = [_metrics(tmp_path / p)[0]["train_soft"] for p in ("32", "bf16-mixed")]
    assert soft[0] != soft[1] and soft[0] == pytest.approx(soft[1], rel=0.05)


@pytest.mark.parametrize("optim, sched", [("adamw", "step"), ("sgd", "none")])
def test_optimizers_and_schedules_are_the_ones_asked_for(optim, sched, tmp_path):
    out = tmp_path / "run"
    args = ["teacher=mlp", *DIGITS, "trainer.epochs=3", f"optim={optim}", f"sched={sched}", _root(tmp_path)]
    if sched == "step":
        args.append("sched.step_size=1")
    api.run("teacher", [*args, f"paths.output_dir={out}"])
    state = load_state(out / "checkpoints" / "state.pt")
    group = state["optimizer"]["param_groups"][0]
    assert ("betas" in group) == (optim == "adamw") and ("momentum" in group) == (optim == "sgd")
    lrs = [r["lr"] for r in _metrics(out)]
    assert lrs[0] < lrs[1], lrs  # the teacher recipe's warm-up (sched.warmup_epochs=2) works with every schedule
    if sched == "none":
        assert lrs[2] == pytest.approx(lrs[1]), lrs
    else:
        assert lrs[2] == pytest.approx(lrs[1] * 0.1), lrs  # then stepped down by gamma every epoch


def test_an_experiment_overlay_and_cfg_job(tmp_path):
    shown = run_cli("train", "experiment=mnist5k_resnet18_mlp", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    import yaml

    cfg = yaml.safe_load(shown.stdout)
    assert cfg["dataset"]["_target_"].endswith("mnist5k") and cfg["teacher"]["name"] == "resnet18"
    assert cfg["student"]["name"] == "mlp" and cfg["trainer"]["epochs"] == 40
    assert not (tmp_path / "outputs").exists(), "--cfg job runs nothing"


def test_sigint_saves_and_prints_the_resume_command(teacher, tmp_path):
    """Ctrl-C: the step finishes, the state is saved, exit 130 with the command that continues it."""
    run = tmp_path / "run"
    args = ["train", "teacher=lenet5", f"teacher.checkpoint={teacher}", "student=mlp", *DIGITS, "trainer.epochs=20"]
    args += ["trainer.save_every_steps=2", f"hydra.run.dir={run}", _root(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "distill", *args], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    state = run / "checkpoints" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert state.exists(), "no state was saved"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert f"Continue with: distill train resume={run}" in err and "Traceback" not in err
    assert not (run / "summary.json").exists()
    assert load_state(state)["epoch"] < 20


def test_a_teacher_not_above_the_student_alone_is_warned_about(teacher, tmp_path):
    base = ["student=mlp", *DIGITS, "trainer.epochs=3", _root(tmp_path)]
    # under paths.root, where train looks for the student-alone runs to compare with
    alone = api.run("train", [*base, "distill.alpha=0", f"paths.output_dir={tmp_path / 'outputs' / 'train' / 'alone'}"])
    weak = tmp_path / "weak"
    api.run("teacher", ["teacher=lenet5", *DIGITS, "trainer.epochs=1", "optim.lr=1e-4", _root(tmp_path),
                        f"paths.output_dir={weak}"])  # fmt: skip
    summary = api.run(
        "train", [*base, "teacher=lenet5", f"teacher.checkpoint={weak}", f"paths.output_dir={tmp_path / 'kd'}"]
    )
    assert summary["teacher_test_acc"] < alone["test_acc"]
    assert any("is not above the student trained alone" in w for w in summary["warnings"]), summary["warnings"]


def test_a_chain_of_different_models(tmp_path):
    summary = api.run(
        "chain", ["chain.models=[resnet18,lenet5,mlp]", *DIGITS, "trainer.epochs=1", _root(tmp_path)]
    )  # fmt: skip
    steps = summary["steps"]
    assert [s["model"] for s in steps] == ["resnet18", "lenet5", "mlp"]
    first = json.loads((Path(steps[0]["run"]) / "summary.json").read_text())
    assert first["epochs"] == 1, "trainer.epochs given for the chain applies to its first step too"
    for before, after in zip(steps, steps[1:]):  # each step learned from the run before it
        config = json.loads((Path(after["run"]) / "summary.json").read_text())
        assert config["teacher_weights"].startswith(str(Path(before["run"]).resolve()))
    assert steps[-1]["test_acc"] > 0.3, steps  # the last student learned (chance: 0.1), whatever its teachers' budget


def test_teacher_weights_fine_tunes_from_the_file_in_torchs_hub_cache(tmp_path, monkeypatch):
    """``teacher.weights=IMAGENET1K_V1``: torchvision's file, found offline in torch's hub cache."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(5)
    pretrained = torchvision.models.resnet18()
    torch.save(pretrained.state_dict(), cached)
    out = tmp_path / "run"
    args = ["teacher=resnet18", "teacher.weights=IMAGENET1K_V1", *DIGITS, "trainer.epochs=1", "optim.lr=1e-3"]
    summary = api.run("teacher", [*args, _root(tmp_path), f"paths.output_dir={out}"])
    from distill.engine.checkpoint import load_model

    model = load_model(out)[0]
    tuned, start = model.net.conv1.weight.detach().flatten(), pretrained.conv1.weight.flatten()
    assert torch.cosine_similarity(tuned, start, dim=0) > 0.9, "training started from the file's weights"
    assert not torch.equal(tuned, start), "and changed them"
    assert model.net.fc.out_features == 10 and summary["epochs"] == 1


def test_cache_clear_one_entry_and_the_max_gb_fallback(teacher, tmp_path):
    base = ["teacher=lenet5", f"teacher.checkpoint={teacher}", "student=mlp", *DIGITS, "trainer.epochs=1"]
    base.append(_root(tmp_path))
    paths = [api.run("train", [*base, f"seed={s}"])["teacher_cache"]["path"] for s in (0, 1)]  # one per seed
    keys = [Path(p).name for p in paths]
    assert len(set(keys)) == 2
    cache = tmp_path / "outputs" / "cache"
    cleared = run_cli("cache", "clear", f"entry={keys[0][:10]}", f"dir={cache}", cwd=tmp_path)
    assert cleared.returncode == 0 and "removed 1 cache entries" in cleared.stdout, cleared.stdout + cleared.stderr
    assert not Path(paths[0]).exists() and Path(paths[1]).is_dir()
    out = tmp_path / "live"
    live = api.run("train", [*base, "seed=2", "cache.max_gb=1e-9", f"paths.output_dir={out}"])
    assert live["teacher_cache"]["used"] is False and "cache.max_gb" in live["teacher_cache"]["reason"]
    row = _metrics(out)[0]  # the run went on with the teacher live: soft targets came from it
    assert row["train_soft"] > 0 and live["teacher_backend"] in ("torch", "onnxruntime")
