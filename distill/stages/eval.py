"""``distill eval run=RUN_DIR``: how good, how sure and how fast a trained model is.

Top-1/top-5 accuracy, agreement with the teacher it was distilled from, expected calibration
error, parameters and latency, on the test (or val) split of the data the run was trained on.
Writes ``eval.json`` into the run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from distill.config.adapters import teacher_for_comparison
from distill.config.checks import raise_if
from distill.config.entry import hydra_entry
from distill.data.stored import build_stored_dataset
from distill.engine.checkpoint import check_weights, load_model, run_folder
from distill.engine.loop import predict
from distill.engine.metrics import expected_calibration_error, speed, topk_accuracy
from distill.engine.runs import RunDir, read_json, write_json
from distill.engine.tables import print_folder, print_table
from distill.errors import UserError
from distill.models.registry import count_params


def validate(cfg: DictConfig) -> None:
    errors = []
    if cfg.split not in ("test", "val"):
        errors.append(f"split={cfg.split!r} must be test or val")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        errors.append(f"batch_size must be a whole number >= 1, got {cfg.batch_size!r}")
    try:
        check_weights(cfg.run)
    except UserError as e:
        errors.append(f"run: {e}")
    raise_if(errors)


def load_split(config: dict, split: str, source: Path | str) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The images and labels of ``split`` of the dataset a run was trained on, as the config stored
    in its weights file ``source`` describes it (data only: see :mod:`distill.data.stored`)."""
    if "dataset" not in config:
        raise UserError(f"{source} carries no training config; cannot tell which data it was trained on")
    data = build_stored_dataset(config["dataset"], f"{source}: config.dataset")
    return getattr(data, f"{split}_x"), getattr(data, f"{split}_y"), data


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else ("cpu" if cfg.device == "auto" else cfg.device)
    )
    model, spec, config, path = load_model(cfg.run)
    run_dir = run_folder(path)
    x, y, data = load_split(config, cfg.split, path)
    model.to(device)
    logits = predict(model, x, cfg.batch_size, device)
    result: dict[str, Any] = {
        "run": str(run_dir),
        "weights": str(path),
        "model": spec.name,
        "dataset": data.name,
        "split": cfg.split,
        "images": len(y),
        "top1": round(topk_accuracy(logits, y, 1), 6),
        "top5": round(topk_accuracy(logits, y, 5), 6),
        "ece": round(expected_calibration_error(logits, y), 6),
        "params": count_params(model),
        **speed(model, x[:1].to(device).float().div(255)),
    }
    summary = read_json(RunDir(run_dir).summary) or {}
    found = teacher_for_comparison(summary.get("teacher_weights"))
    if found is not None:
        teacher, teacher_name = found
        t_logits = predict(teacher.to(device), x, cfg.batch_size, device)
        result["teacher"] = teacher_name
        result["teacher_top1"] = round(topk_accuracy(t_logits, y, 1), 6)
        result["teacher_agreement"] = round((t_logits.argmax(1) == logits.argmax(1)).float().mean().item(), 6)
    write_json(run_dir / "eval.json", result)
    keys = ("top1", "top5", "ece", "teacher_top1", "teacher_agreement", "params", "latency_ms", "images_per_s")
    print_table(
        f"{spec.name} on {data.name} {cfg.split} ({len(y)} images)",
        ["metric", "value"],
        [[k, result[k]] for k in keys if k in result],
    )
    print_folder("eval.json written into run folder", run_dir)
    return result


main = hydra_entry("eval", run)

if __name__ == "__main__":
    main()
