"""``distill train``: distil a teacher into a student.

    distill train teacher=resnet152 student=mobilenet distill.temperature=4 distill.alpha=0.5

The teacher comes from ``teacher.checkpoint`` (a run folder or weights file), else from the newest
finished ``teacher`` run of the same model and dataset under ``paths.root``; when there is none,
it is trained first (and reused next time). ``distill.alpha=0`` trains the student alone.
Where the teacher's outputs come from is :mod:`distill.teachers`' business; the checks of the
config are :mod:`distill.config.train_checks`.
"""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill import teachers
from distill.config.adapters import (
    build_loss,
    data_key,
    dataset_key,
    load_data,
    model_key,
    model_spec,
    model_weights,
    open_loggers,
    output_dir,
    resolved_optim,
    resume_state,
    save_resolved_config,
    setup,
    sweep_scope,
    train_recipe,
)
from distill.config.checks import plain_value
from distill.config.entry import hydra_entry
from distill.config.train_checks import validate
from distill.engine import distributed as dist
from distill.engine.memo import remembered
from distill.engine.runs import RunDir, env_info, find_runs, write_json
from distill.engine.supervised import describe, run_figures, train_supervised
from distill.engine.tables import MODEL_COLUMNS, model_row, print_folder, print_table, teacher_far_below
from distill.errors import UserError

__all__ = ["main", "run", "validate"]

log = logging.getLogger("distill")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Distils ``cfg.teacher`` into ``cfg.student`` on ``cfg.dataset``; returns (and writes) the summary."""
    validate(cfg)
    settings, device = setup(cfg)
    state = resume_state(cfg)
    # a resumed run learns from the teacher it started with, not a newer run found under paths.root
    resumed = _resumed_teacher(state)
    data = load_data(cfg)
    loss_fn = build_loss(cfg, settings.epochs)
    method = loss_fn.method if loss_fn.method is not None and loss_fn.beta > 0 else None
    plan = teachers.teacher_plan(cfg)
    for line in method.advice(1 + len(plan.extra)) if method is not None else []:
        log.warning(line)
    run_dir = output_dir(cfg)
    got = teachers.prepare(plan, data, device, settings, resumed)
    settings = got.settings
    if dist.is_main():
        save_resolved_config(cfg, run_dir)
        write_json(RunDir(run_dir).env, env_info(device))
    got = teachers.serve(got, plan, data, device)
    settings = got.settings  # the teacher's runtime, when it runs at every step, is settled by serve
    loggers = open_loggers(cfg, run_dir, "train")
    spec = model_spec(cfg.student, data)
    try:
        student, result, best = train_supervised(
            spec,
            data,
            loss_fn,
            settings,
            device,
            run_dir,
            train_recipe(cfg),
            init_weights=model_weights(cfg.student),
            layers=(plain_value(cfg.distill.get("student_layers")), plain_value(cfg.distill.get("teacher_layers"))),
            teachers=got.teachers,
            view_fn=got.view_fn,
            resume=state,
            extra_state={"teacher_weights": str(got.path.resolve()) if got.path else None},
            on_epoch=loggers.epoch,
        )
    except BaseException:
        loggers.fail()
        raise
    if not dist.is_main():  # rank 0 measures, writes and reports
        return {"stage": "train", "rank": dist.rank()}
    if plan.online:
        teachers.finish_peers(got.teachers, data, settings, device, int(cfg.seed))
    scope = sweep_scope()  # a sweep's members measure an architecture's speed, and describe their teacher, once
    arch = json.dumps(spec.kwargs) + spec.name
    s_desc = describe(student, best, data, settings, device, result.kept_test_logits, scope=scope, arch=arch)
    t_desc = _teacher_description(got, data, data_key(cfg), settings, device, scope) if got.describable else None
    lr = float(resolved_optim(cfg)[0].lr)  # the rate optim.lr=auto stood for, or the one given
    alone = _student_alone(cfg, settings.epochs, lr) if got.model is not None else None
    warnings = _weak_teacher(t_desc, alone, s_desc["test_acc"])
    summary = {
        "stage": "train",
        "student": spec.name,
        "teacher": got.name,
        "dataset": data.name,
        **run_figures(data, s_desc, result, settings.epochs, int(cfg.seed), best),
        "teacher_test_acc": t_desc["test_acc"] if t_desc else None,
        "teacher_weights": str(got.path.resolve()) if got.path else None,
        "student_alone": alone,
        "lr": lr,
        "grad_clip": settings.grad_clip,
        "select": settings.select,
        "temperature": float(cfg.distill.temperature),
        "alpha": float(cfg.distill.alpha),
        "loss": str(cfg.distill.loss),
        "method": type(method).__name__ if method is not None else None,
        "beta": loss_fn.beta if method is not None else None,
        "teacher_cache": got.cache,
        "teacher_backend": got.backend,  # what ran the teacher at every step (None: the cache, or no teacher)
        "warnings": warnings,
        "student_key": model_key(cfg.student),
        "dataset_key": dataset_key(cfg),
    }
    summary["loggers"] = loggers.finish(summary, [best])
    write_json(RunDir(run_dir).summary, summary)
    _print_result(summary, plan, t_desc, s_desc, run_dir)
    return summary


def _teacher_description(
    got: Any, data: Any, read_from: tuple, settings: Any, device: Any, scope: str | None
) -> dict[str, Any]:
    """The teacher's test accuracy, size and speed; in a sweep, once for the same weights file, data
    (``read_from``: what it was read from) and way of running it."""
    path = got.path
    stat = path.stat() if path is not None and path.is_file() else None
    key = (
        "teacher", str(path), stat and (stat.st_size, stat.st_mtime_ns), read_from, got.backend,
        settings.teacher_precision, settings.precision, settings.channels_last, str(device),
    )  # fmt: skip
    return remembered(
        scope if stat is not None else None,
        key,
        lambda: describe(got.model, path, data, settings, device, params=got.params),
    )


def _resumed_teacher(state: dict | None) -> Path | None:
    """The teacher weights a resumed run started with (None for a new run)."""
    path = (state or {}).get("extra", {}).get("teacher_weights")
    if path and not Path(path).is_file():
        raise UserError(f"the teacher this run started with, {path}, is gone: it cannot be resumed")
    return Path(path) if path else None


def _weak_teacher(t_desc: dict | None, alone: dict | None, student_acc: float | None) -> list[str]:
    """Warnings (logged, and kept in the summary) when the teacher is no better than the student alone,
    or far below the student it taught."""
    warnings = []
    if t_desc and alone and t_desc["test_acc"] <= alone["test_acc_mean"]:
        warnings.append(
            f"the teacher ({t_desc['test_acc']:.4f}) is not above the student trained alone "
            f"({alone['test_acc_mean']:.4f}, {alone['runs']} runs): distillation cannot be expected to help; "
            "train a stronger teacher"
        )
    below = teacher_far_below(t_desc["test_acc"] if t_desc else None, student_acc)
    warnings += [below] if below else []
    for warning in warnings:
        log.warning(warning)
    return warnings


def _student_alone(cfg: DictConfig, epochs: int, lr: float) -> dict[str, Any] | None:
    """Test accuracy (mean, std) of finished alpha=0 runs of the same student, data, epochs, rate, gradient
    limit and epoch rule, if any."""
    root = Path(str(cfg.paths.root))
    match = {
        "alpha": 0.0,
        "method": None,
        "student_key": model_key(cfg.student),
        "dataset_key": dataset_key(cfg),
        "epochs": epochs,
        # trained the same way (a run from before these were recorded does not match)
        "lr": lr,
        "grad_clip": cfg.trainer.get("grad_clip"),
        "select": cfg.trainer.get("select"),  # kept its epoch by the same rule
    }
    accs = [s["test_acc"] for _, s in find_runs(root, "train", **match)]
    if not accs:
        return None
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return {"test_acc_mean": round(statistics.fmean(accs), 6), "test_acc_std": round(std, 6), "runs": len(accs)}


def _print_result(s: dict, plan: teachers.TeacherPlan, t_desc: dict | None, s_desc: dict, run_dir: Path) -> None:
    """The run's table: teacher, student and the student trained alone, with the run's settings."""
    t_label = f"teacher {s['teacher']}"
    if plan.online:
        t_label = f"{'peer' if plan.mutual else 'online teacher'} {teachers.peer_names(plan)[0]}"
    rows = [model_row(t_label, t_desc)] if t_desc else []
    method = s["method"]
    how = f" ({method or 'kd'})" if s["teacher"] is not None else (f" ({method})" if method else " (alone)")
    rows.append(model_row(f"student {s['student']}{how}", s_desc))
    if s["student_alone"]:
        alone = s["student_alone"]
        rows.append([f"student alone ({alone['runs']} runs)", alone["test_acc_mean"], None, None, None, None])
    print_table(
        f"{s['dataset']}: T={s['temperature']:g} alpha={s['alpha']:g} loss={s['loss']}"
        + (f" + {s['beta']:g} x {method}" if method else "")
        + f", epoch {s['best_epoch']}/{s['epochs']} kept (trainer.select={s['select']})",
        MODEL_COLUMNS,
        rows,
    )
    print_folder("train run folder", run_dir)


main = hydra_entry("train", run, metric="val_acc")

if __name__ == "__main__":
    main()
