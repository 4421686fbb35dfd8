"""The teacher recipe: a model trained on the labels alone (cross-entropy), in a run folder of its
own. ``distill teacher`` runs it, and so does ``distill train`` for the teacher it trains itself."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from distill.config.adapters import (
    dataset_key,
    load_data,
    model_key,
    model_spec,
    open_loggers,
    output_dir,
    resume_state,
    save_resolved_config,
    setup,
    train_recipe,
)
from distill.config.checks import check_training, raise_if
from distill.engine import distributed as dist
from distill.engine.runs import RunDir, env_info, write_json
from distill.engine.supervised import describe, run_figures, train_supervised
from distill.engine.tables import MODEL_COLUMNS, model_row, print_table
from distill.losses.combined import DistillLoss
from distill.losses.kd import KDLoss


def validate(cfg: DictConfig) -> None:
    errors: list[str] = []
    check_training(cfg, errors, ("teacher",))
    raise_if(errors)


def train_teacher(cfg: DictConfig) -> dict[str, Any]:
    """Trains ``cfg.teacher`` on ``cfg.dataset`` (a ``teacher`` stage config); returns (and writes) the
    run's summary."""
    validate(cfg)
    settings, device = setup(cfg)
    state = resume_state(cfg)
    run_dir = output_dir(cfg)
    if dist.is_main():
        save_resolved_config(cfg, run_dir)
        write_json(RunDir(run_dir).env, env_info(device))
    data = load_data(cfg)
    loggers = open_loggers(cfg, run_dir, "teacher")
    spec = model_spec(cfg.teacher, data)
    try:
        model, result, best = train_supervised(
            spec,
            data,
            DistillLoss(KDLoss(alpha=0.0)),
            settings,
            device,
            run_dir,
            train_recipe(cfg),
            init_weights=cfg.teacher.get("weights"),
            resume=state,
            on_epoch=loggers.epoch,
        )
    except BaseException:
        loggers.fail()
        raise
    if not dist.is_main():  # rank 0 measures, writes and reports
        return {"stage": "teacher", "rank": dist.rank()}
    desc = describe(model, best, data, settings, device)
    summary = {
        "stage": "teacher",
        "model": spec.name,
        "dataset": data.name,
        **run_figures(data, desc, result, settings.epochs, int(cfg.seed), best),
        "model_key": model_key(cfg.teacher),
        "dataset_key": dataset_key(cfg),
    }
    summary["loggers"] = loggers.finish(summary, [best])
    write_json(RunDir(run_dir).summary, summary)
    print_table(
        f"teacher {spec.name} on {data.name} (best epoch {result.best_epoch} by val acc)",
        MODEL_COLUMNS,
        [model_row(f"teacher {spec.name}", desc)],
    )
    return summary
