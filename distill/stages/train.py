"""``distill train``: distil a teacher into a student.

    distill train teacher=resnet152 student=mobilenet distill.temperature=4 distill.alpha=0.5

The teacher comes from ``teacher.checkpoint`` (a run folder or weights file), else from the newest
finished ``teacher`` run of the same model and dataset under ``paths.root``; when there is none,
it is trained first (and reused next time). ``distill.alpha=0`` trains the student alone.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from distill.data.base import Splits
from distill.engine.checkpoint import build_from_spec, load_state_into, read_weights, spec_of, weights_path
from distill.engine.fit import TrainerSettings
from distill.engine.loop import Teachers
from distill.engine.runs import env_info, find_runs, write_json
from distill.engine.tables import MODEL_COLUMNS, model_row, print_table
from distill.errors import UserError
from distill.losses.combined import DistillLoss
from distill.losses.kd import KDLoss
from distill.stages import teacher as teacher_stage
from distill.stages.common import (
    check_distill,
    check_path,
    check_training,
    compose_stage,
    dataset_key,
    hydra_entry,
    load_data,
    model_key,
    model_spec,
    output_dir,
    raise_if,
    save_resolved_config,
    setup,
)
from distill.stages.training import describe, train_model

log = logging.getLogger("distill")


def uses_teacher(cfg: DictConfig) -> bool:
    """Whether the run needs a teacher: a logit term, or a method term that reads one."""
    d = cfg.distill
    if isinstance(d.alpha, (int, float)) and d.alpha > 0:
        return True
    beta = d.get("beta", 0)
    if d.get("method") is None or not isinstance(beta, (int, float)) or beta <= 0:
        return False
    return bool(getattr(get_class(str(d.method._target_)), "uses_teacher", True))


def build_loss(cfg: DictConfig, epochs: int) -> DistillLoss:
    """The run's loss: hard labels, logit KD and the ``distill.method`` module, as configured."""
    d = cfg.distill
    kd = KDLoss(
        temperature=float(d.temperature),
        alpha=float(d.alpha),
        kind=str(d.loss),
        label_smoothing=float(d.get("label_smoothing", 0.0)),
        temperature_end=d.get("temperature_end"),
        epochs=epochs,
    )
    method = instantiate(d.method, _convert_="all") if d.get("method") is not None else None
    return DistillLoss(kd, method, float(d.get("beta", 0.0)))


def validate(cfg: DictConfig) -> None:
    errors: list[str] = []
    check_distill(cfg, errors)
    if errors:
        raise_if(errors)
    uses_teacher_ = uses_teacher(cfg)
    check_training(cfg, errors, ("student", "teacher") if uses_teacher_ else ("student",))
    check_path(cfg.teacher.checkpoint, "teacher.checkpoint", errors)
    if uses_teacher_ and cfg.teacher.checkpoint is not None and not errors:
        try:
            read_weights(weights_path(str(cfg.teacher.checkpoint)))  # refuses pickles and corrupt files
        except UserError as e:
            errors.append(f"teacher.checkpoint: {e}")
    raise_if(errors)


def _train_teacher_first(cfg: DictConfig) -> Path:
    """Runs the ``teacher`` stage for ``cfg.teacher`` on ``cfg.dataset``, in a run folder of its own."""
    tcfg = compose_stage("teacher", [f"seed={cfg.seed}"])
    tcfg.teacher = OmegaConf.to_container(cfg.teacher, resolve=True)
    tcfg.dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    tcfg.paths.root = str(cfg.paths.root)
    stamp = datetime.now().strftime("%Y-%m-%d/%H-%M-%S_%f")
    tcfg.paths.output_dir = str(Path(cfg.paths.root) / "teacher" / stamp)
    for key in ("device", "precision", "threads", "progress", "num_workers", "channels_last"):
        tcfg.trainer[key] = cfg.trainer[key]
    log.warning(
        "no finished teacher run of %s on %s under %s/: training it first in %s (later runs reuse it)",
        cfg.teacher.name,
        cfg.dataset.get("_target_", "?").rsplit(".", 1)[-1],
        cfg.paths.root,
        tcfg.paths.output_dir,
    )
    teacher_stage.run(tcfg)
    return Path(tcfg.paths.output_dir)


def _teacher_weights(cfg: DictConfig) -> Path | None:
    """The weights file to load the teacher from, training the teacher first if needed."""
    node = cfg.teacher
    if node.checkpoint is not None:
        return weights_path(str(node.checkpoint))
    runs = find_runs(Path(str(cfg.paths.root)), "teacher", model_key=model_key(node), dataset_key=dataset_key(cfg))
    run_dir = runs[0][0] if runs else _train_teacher_first(cfg)
    return run_dir / "checkpoints" / "best.safetensors"


def load_teacher(
    cfg: DictConfig, data: Splits, device: torch.device, settings: TrainerSettings
) -> tuple[nn.Module, Path]:
    """The teacher in eval mode without gradients, checked against the dataset's classes."""
    path = _teacher_weights(cfg)
    tensors, meta = read_weights(path)
    spec = spec_of(meta, path) or model_spec(cfg.teacher, data)
    if spec.classes != data.classes:
        raise UserError(
            f"the teacher in {path} was trained on {spec.num_classes} classes ({', '.join(spec.classes[:5])}...) "
            f"but dataset {data.name} has {data.num_classes} ({', '.join(data.classes[:5])}...); "
            "use a teacher trained on this dataset"
        )
    if list(spec.image_size) != list(data.image_size):
        raise UserError(
            f"the teacher in {path} was trained on {spec.image_size} images, dataset {data.name} has "
            f"{list(data.image_size)}"
        )
    model = build_from_spec(spec)
    load_state_into(model, tensors, path)
    model.to(device).eval().requires_grad_(False)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    log.info("teacher %s loaded from %s", spec.name, path)
    return model, path


def _student_alone(cfg: DictConfig, epochs: int) -> dict[str, Any] | None:
    """Mean test accuracy of finished alpha=0 runs of the same student, data and epochs, if any."""
    root = Path(str(cfg.paths.root))
    match = {
        "alpha": 0.0,
        "method": None,
        "student_key": model_key(cfg.student),
        "dataset_key": dataset_key(cfg),
        "epochs": epochs,
    }
    accs = [s["test_acc"] for _, s in find_runs(root, "train", **match)]
    return {"test_acc_mean": round(sum(accs) / len(accs), 6), "runs": len(accs)} if accs else None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Distils ``cfg.teacher`` into ``cfg.student`` on ``cfg.dataset``; returns (and writes) the summary."""
    validate(cfg)
    settings, device = setup(cfg)
    data = load_data(cfg)
    T, alpha = float(cfg.distill.temperature), float(cfg.distill.alpha)
    loss_fn = build_loss(cfg, settings.epochs)
    method_name = type(loss_fn.method).__name__ if loss_fn.method is not None and loss_fn.beta > 0 else None
    teacher, teacher_path = load_teacher(cfg, data, device, settings) if loss_fn.uses_teacher else (None, None)
    run_dir = output_dir(cfg)
    save_resolved_config(cfg, run_dir)
    write_json(run_dir / "env.json", env_info(device))
    teachers = Teachers([teacher]) if teacher is not None else None
    student, spec, result, best = train_model(cfg, cfg.student, data, loss_fn, settings, device, run_dir, teachers)
    s_desc = describe(student, best, data, settings, device)
    t_desc = describe(teacher, teacher_path, data, settings, device) if teacher is not None else None
    student_alone = _student_alone(cfg, settings.epochs) if teacher is not None else None
    warnings = []
    if t_desc and student_alone and t_desc["test_acc"] <= student_alone["test_acc_mean"]:
        warnings.append(
            f"the teacher ({t_desc['test_acc']:.4f}) is not above the student trained alone "
            f"({student_alone['test_acc_mean']:.4f}, {student_alone['runs']} runs): distillation cannot "
            "be expected to help; train a stronger teacher"
        )
    for w in warnings:
        log.warning(w)
    summary = {
        "stage": "train",
        "student": spec.name,
        "teacher": str(cfg.teacher.name) if teacher is not None else None,
        "dataset": data.name,
        **s_desc,
        "last_test_acc": round(result.last_test_acc, 6),
        "val_acc": round(result.best_val_acc, 6),
        "best_epoch": result.best_epoch,
        "epochs": settings.epochs,
        "teacher_test_acc": t_desc["test_acc"] if t_desc else None,
        "teacher_weights": str(teacher_path.resolve()) if teacher_path else None,
        "student_alone": student_alone,
        "temperature": T,
        "alpha": alpha,
        "loss": str(cfg.distill.loss),
        "method": method_name,
        "beta": loss_fn.beta if method_name else None,
        "train_images_per_s": round(result.train_images_per_s, 1),
        "train_seconds": round(result.train_seconds, 2),
        "bn_recalibrated_images": result.bn_recalibrated_images,
        "seed": int(cfg.seed),
        "weights": str(best.resolve()),
        "warnings": warnings,
        "student_key": model_key(cfg.student),
        "dataset_key": dataset_key(cfg),
    }
    write_json(run_dir / "summary.json", summary)
    rows = [model_row(f"teacher {cfg.teacher.name}", t_desc)] if t_desc else []
    how = f" ({method_name or 'kd'})" if teacher is not None else (f" ({method_name})" if method_name else " (alone)")
    rows.append(model_row(f"student {spec.name}{how}", s_desc))
    if student_alone:
        rows.append(
            [f"student alone ({student_alone['runs']} runs)", student_alone["test_acc_mean"], None, None, None, None]
        )
    print_table(
        f"{data.name}: T={T:g} alpha={alpha:g} loss={cfg.distill.loss}"
        + (f" + {loss_fn.beta:g} x {method_name}" if method_name else "")
        + f", best epoch {result.best_epoch}/"
        f"{settings.epochs} by val acc; run {run_dir}",
        MODEL_COLUMNS,
        rows,
    )
    return summary


main = hydra_entry("train", run, metric="val_acc")

if __name__ == "__main__":
    main()
