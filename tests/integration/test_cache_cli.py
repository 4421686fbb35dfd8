"""The teacher cache as a user meets it: built once, read by the next run, verified, cleared."""

import json
from pathlib import Path

import numpy as np
import torch

from distill import api, config_dir
from distill.engine.checkpoint import load_model, save_weights
from distill.stages import teacher as teacher_stage
from tests.conftest import DIGITS, FAST, outputs_root, read_metrics, run_cli

RUN = ["teacher=lenet5", "student=mlp", "student.kwargs.hidden=[32]", "trainer.epochs=2", *FAST]


def _train_teacher(root: Path) -> Path:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="teacher", overrides=["teacher=lenet5", "trainer.epochs=1", *FAST])
    GlobalHydra.instance().clear()
    cfg.paths.output_dir = str(root / "teacher")
    teacher_stage.run(cfg)
    return root / "teacher"


def _entries(root: Path) -> list[Path]:
    """The cache's entries (its onnx/ folder holds teachers exported for onnxruntime)."""
    return [p for p in (root / "outputs" / "cache").iterdir() if (p / "meta.json").is_file()]


def _summaries(root: Path) -> list[dict]:
    files = sorted((root / "outputs" / "train").glob("*/*/summary.json"))
    return [json.loads(p.read_text()) for p in files]


def test_second_run_reads_the_cache_and_gets_the_same_numbers(tmp_path):
    teacher = _train_teacher(tmp_path)
    for _ in range(2):
        result = run_cli("train", f"teacher.checkpoint={teacher}", *RUN, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    first, second = _summaries(tmp_path)
    assert first["teacher_cache"]["status"] == "built" and second["teacher_cache"]["status"] == "hit"
    assert first["teacher_cache"]["views"] == 2  # one augmented view per epoch
    assert first["test_acc"] == second["test_acc"] and first["last_test_acc"] == second["last_test_acc"]
    assert "teacher cache hit" in result.stdout + result.stderr

    result = run_cli("cache", "verify", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert " ok " in result.stdout
    # A corrupted entry is caught by verify: one line, exit 2.
    (entry,) = _entries(tmp_path)
    logits = np.load(entry / "logits.npy", mmap_mode="r+")
    logits[0, :] += 1.0
    logits.flush()
    del logits
    result = run_cli("cache", "verify", cwd=tmp_path)
    assert result.returncode == 2 and "MISMATCH" in result.stdout and "failed" in result.stderr

    result = run_cli("cache", "ls", cwd=tmp_path)
    assert entry.name in result.stdout
    result = run_cli("cache", "clear", cwd=tmp_path)
    assert result.returncode == 0 and not _entries(tmp_path)
    assert not list((tmp_path / "outputs" / "cache").glob("onnx/*.onnx")), "exported teachers are freed too"


def test_a_changed_teacher_never_reads_the_old_entry(tmp_path):
    teacher = _train_teacher(tmp_path)
    assert run_cli("train", f"teacher.checkpoint={teacher}", *RUN, cwd=tmp_path).returncode == 0
    weights = teacher / "checkpoints" / "best.safetensors"
    model, spec, config, _ = load_model(weights)  # the same teacher with one weight changed, saved
    with torch.no_grad():  # properly (a byte edited in place is refused as damaged by its checksum)
        next(model.parameters()).view(-1)[0] += 1.0
    save_weights(weights, model, spec, config)
    result = run_cli("train", f"teacher.checkpoint={teacher}", *RUN, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [s["teacher_cache"]["status"] for s in _summaries(tmp_path)] == ["built", "built"]
    assert len(_entries(tmp_path)) == 2


def test_cache_clear_one_entry_and_the_max_gb_fallback(digits_teacher, tmp_path):
    base = ["teacher=lenet5", f"teacher.checkpoint={digits_teacher}", "student=mlp", *DIGITS, "trainer.epochs=1"]
    base.append(outputs_root(tmp_path))
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
    row = read_metrics(out)[0]  # the run went on with the teacher live: soft targets came from it
    assert row["train_soft"] > 0 and live["teacher_backend"] in ("torch", "onnxruntime")
