"""``distill chain chain.models=[A,B,C]``: A teaches B, B teaches C; each step a run of its own.

A teacher-assistant chain bridges a large capacity gap (Mirzadeh et al. 2020); one architecture
repeated is born-again self-distillation (Furlanello et al. 2018). The chain's folder holds one
run folder per step (``0_A`` trained on labels, ``1_B``, ``2_C`` distilled), ``chain.json`` and
the table printed at the end.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill.config.adapters import output_dir, save_resolved_config
from distill.config.checks import plain_value, raise_if
from distill.config.entry import compose_stage, hydra_entry
from distill.engine.checkpoint import read_weights, spec_of, weights_path
from distill.engine.runs import RunDir, write_json
from distill.engine.tables import print_folder, print_table
from distill.errors import UserError
from distill.stages import train as train_stage
from distill.teachers import auto as auto_teacher

log = logging.getLogger("distill")


def validate(cfg: DictConfig) -> None:
    errors: list[str] = []
    models = plain_value(cfg.chain.models)
    if not isinstance(models, list) or len(models) < 2 or not all(isinstance(m, str) for m in models):
        errors.append(f"chain.models must list at least two model names (teacher first), got {models!r}")
        raise_if(errors)
    probe = cfg.copy()
    for name in models:
        probe.student = _node("student", name, cfg)
        try:
            train_stage.validate(probe)
        except UserError as e:
            errors.append(str(e))
            break
    raise_if(errors)


def _node(group: str, name: str, cfg: DictConfig | None = None) -> dict[str, Any]:
    """The config node of model ``name`` in ``group``: this run's own node when it names the same
    model (so ``student.kwargs...`` overrides apply), else its YAML file's, else a bare torchvision name."""
    if cfg is not None and cfg.get(group) is not None and cfg[group].name == name:
        return OmegaConf.to_container(cfg[group], resolve=True)
    try:
        node = compose_stage("train", [f"{group}={name}"])[group]
    except Exception:  # noqa: BLE001 - an unknown name is reported by the stage's own validation
        return {"name": name, "kwargs": {}, "weights": None, **({"checkpoint": None} if group == "teacher" else {})}
    return OmegaConf.to_container(node, resolve=True)


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    models = list(plain_value(cfg.chain.models))
    chain_dir = output_dir(cfg)
    save_resolved_config(cfg, chain_dir)
    steps: list[dict[str, Any]] = []

    first = cfg.copy()
    first.teacher = {**_node("teacher", models[0], cfg), "checkpoint": cfg.teacher.checkpoint}
    if cfg.teacher.checkpoint is not None:
        prev = Path(str(cfg.teacher.checkpoint))
        weights = weights_path(prev)
        spec = spec_of(read_weights(weights)[1], weights)
        if spec is not None and spec.name != models[0]:
            raise UserError(
                f"teacher.checkpoint={prev} holds a {spec.name}, but chain.models starts with {models[0]}; "
                f"start the chain with {spec.name}"
            )
        log.info("chain step 0: %s from %s", models[0], prev)
        summary_file = RunDir.of_weights(weights).summary
        summary = _read_summary(weights.parent.parent) if summary_file.is_file() else {}
        steps.append({"step": 0, "model": models[0], "run": str(prev), **_figures(summary)})
    else:
        prev = auto_teacher.train(first, chain_dir / f"0_{models[0]}")
        summary = _read_summary(prev)
        steps.append({"step": 0, "model": models[0], "run": str(prev), **_figures(summary)})
    for k, name in enumerate(models[1:], start=1):
        step = cfg.copy()
        OmegaConf.set_struct(step, False)
        step.stage = "train"
        step.pop("chain")
        teacher_node = _node("student", models[k - 1], cfg) if k > 1 else _node("teacher", models[0], cfg)
        step.teacher = {**teacher_node, "checkpoint": str(prev)}
        step.student = _node("student", name, cfg)
        step.paths.output_dir = str(chain_dir / f"{k}_{name}")
        log.info("chain step %d: %s taught by %s (%s)", k, name, models[k - 1], prev)
        summary = train_stage.run(step)
        prev = Path(step.paths.output_dir)
        steps.append({"step": k, "model": name, "run": str(prev), **_figures(summary)})
    result = {"stage": "chain", "models": models, "steps": steps, "test_acc": steps[-1]["test_acc"]}
    write_json(chain_dir / "chain.json", result)
    print_table(
        f"chain {' -> '.join(models)} on {cfg.dataset.get('_target_', '?').rsplit('.', 1)[-1]}",
        ("step", "model", "test acc", "params", "run"),
        [[s["step"], s["model"], s["test_acc"], s["params"], s["run"]] for s in steps],
    )
    print_folder("chain run folder", chain_dir)
    return result


def _read_summary(run_dir: Path) -> dict[str, Any]:
    import json

    return json.loads(RunDir(run_dir).summary.read_text())


def _figures(summary: dict[str, Any]) -> dict[str, Any]:
    return {"test_acc": summary.get("test_acc"), "params": summary.get("params")}


main = hydra_entry("chain", run, metric="test_acc")

if __name__ == "__main__":
    main()
