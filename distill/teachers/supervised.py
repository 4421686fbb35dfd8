"""The teacher recipe: a model trained on the labels alone (cross-entropy), in a run folder of its
own. ``distill teacher`` runs it, and so does ``distill train`` for the teacher it trains itself."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.config.adapters import (
    dataset_key,
    load_data,
    model_key,
    model_spec,
    model_weights,
    open_loggers,
    output_dir,
    plain_config,
    resume_state,
    save_resolved_config,
    setup,
    train_recipe,
)
from distill.config.checks import check_training, raise_if
from distill.engine import distributed as dist
from distill.engine.checkpoint import save_weights
from distill.engine.fit import FitResult
from distill.engine.loop import predict
from distill.engine.metrics import topk_accuracy
from distill.engine.runs import RunDir, env_info, write_json
from distill.engine.supervised import describe, run_figures, train_supervised
from distill.engine.tables import MODEL_COLUMNS, model_row, print_folder, print_table
from distill.losses.combined import DistillLoss
from distill.losses.kd import KDLoss
from distill.models.spec import build_from_spec

log = logging.getLogger("distill")


def validate(cfg: DictConfig) -> None:
    errors: list[str] = []
    # trainer.epochs=0 keeps a pretrained teacher as it is (evaluated and saved, not trained)
    check_training(cfg, errors, ("teacher",), min_epochs=0)
    if cfg.trainer.epochs == 0 and model_weights(cfg.teacher) is None:
        errors.append("trainer.epochs=0 keeps a teacher as it is: give it pretrained weights (teacher.weights=...)")
    raise_if(errors)


def keep_pretrained(cfg: DictConfig) -> dict[str, Any]:
    """A ``teacher`` run of a pretrained model used as it is (``trainer.epochs=0``): built with its
    weights, evaluated on val and test, and saved as the run's best weights like a trained teacher."""
    settings, device = setup(cfg)
    run_dir = output_dir(cfg)
    if dist.is_main():
        save_resolved_config(cfg, run_dir)
        write_json(RunDir(run_dir).env, env_info(device))
    data = load_data(cfg)
    spec = model_spec(cfg.teacher, data)
    model = build_from_spec(spec, weights=model_weights(cfg.teacher)).to(device).eval()
    best = save_weights(RunDir(run_dir).best, model, spec, plain_config(cfg)) if dist.is_main() else None
    if not dist.is_main():
        return {"stage": "teacher", "rank": dist.rank()}
    cl, workers = settings.channels_last, settings.num_workers
    val = predict(model, data.val_x, settings.eval_batch_size, device, channels_last=cl, num_workers=workers)
    desc = describe(model, best, data, settings, device)
    kept = FitResult(0, topk_accuracy(val, data.val_y), desc["test_acc"], 0.0, 0.0, 0)
    log.info("teacher %s kept as it is (pretrained, not trained): val acc %.4f", spec.name, kept.best_val_acc)
    summary = _summary(cfg, spec.name, data, desc, kept, best)
    write_json(RunDir(run_dir).summary, summary)
    _print(spec.name, data.name, desc, "pretrained, as it is", run_dir)
    return summary


def _summary(cfg: DictConfig, name: str, data: Any, desc: dict, result: FitResult, best: Any) -> dict[str, Any]:
    """A teacher run's summary: the model, its figures, and the keys that let a train run reuse it."""
    return {
        "stage": "teacher",
        "model": name,
        "dataset": data.name,
        **run_figures(data, desc, result, int(cfg.trainer.epochs), int(cfg.seed), best),
        "model_key": model_key(cfg.teacher),
        "dataset_key": dataset_key(cfg),
    }


def _print(name: str, dataset: str, desc: dict, how: str, run_dir: Path) -> None:
    print_table(f"teacher {name} on {dataset} ({how})", MODEL_COLUMNS, [model_row(f"teacher {name}", desc)])
    print_folder("teacher run folder", run_dir)


def train_teacher(cfg: DictConfig) -> dict[str, Any]:
    """Trains ``cfg.teacher`` on ``cfg.dataset`` (a ``teacher`` stage config); returns (and writes) the
    run's summary."""
    validate(cfg)
    if cfg.trainer.epochs == 0:
        return keep_pretrained(cfg)
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
            train_recipe(cfg, "teacher"),
            init_weights=model_weights(cfg.teacher),
            resume=state,
            on_epoch=loggers.epoch,
        )
    except BaseException:
        loggers.fail()
        raise
    if not dist.is_main():  # rank 0 measures, writes and reports
        return {"stage": "teacher", "rank": dist.rank()}
    desc = describe(model, best, data, settings, device, result.kept_test_logits)
    summary = _summary(cfg, spec.name, data, desc, result, best)
    summary["loggers"] = loggers.finish(summary, [best])
    write_json(RunDir(run_dir).summary, summary)
    _print(spec.name, data.name, desc, f"epoch {result.best_epoch} kept (trainer.select={settings.select})", run_dir)
    return summary
