"""``distill inspect teacher=NAME`` (or ``student=NAME``): the layers a method can tap.

Lists every named module of the model built for the dataset, with its output shape on the
dataset's images and its parameters, and marks the layers ``distill.*_layers=auto`` picks and the
``head`` tap (the input of the last Linear layer). Writes nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from distill.config.adapters import load_data, model_spec
from distill.config.checks import raise_if, target_problems
from distill.config.entry import hydra_entry
from distill.engine.tables import print_table
from distill.engine.taps import auto_layers, head_name, trace_layers
from distill.errors import UserError, closest
from distill.models.registry import available_models
from distill.models.spec import build_from_spec


def validate(cfg: DictConfig) -> None:
    errors = []
    roles = [r for r in ("teacher", "student") if cfg.get(r) is not None]
    if not roles:
        errors.append("name a model: distill inspect teacher=NAME or student=NAME")
    models = available_models()
    for role in roles:
        name = str(cfg[role].name)
        if cfg[role].get("_target_") is not None:
            errors.extend(target_problems(cfg[role], role))
            continue
        if cfg[role].get("source") in ("timm", "hf"):
            continue  # checked when built
        if name not in models:
            errors.append(f"{role}.name={name!r} is not a known model{closest(name, models)}")
    if cfg.depth is not None and (not isinstance(cfg.depth, int) or cfg.depth < 0):
        errors.append(f"depth must be a whole number >= 0 or null, got {cfg.depth!r}")
    raise_if(errors)


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    data = load_data(cfg)
    example = data.train_x[:2].float().div(255)
    result: dict[str, Any] = {}
    for role in ("teacher", "student"):
        if cfg.get(role) is None:
            continue
        spec = model_spec(cfg[role], data)
        try:
            model = build_from_spec(spec)
        except (TypeError, ValueError, RuntimeError) as e:
            raise UserError(f"cannot build {spec.name}: {e}") from e
        with torch.no_grad():
            layers = trace_layers(model, example)
        head = head_name(model)
        auto = auto_layers(layers, head=head)
        rows = []
        for info in layers:
            depth = info.name.count(".") - 1  # below the Classifier's "net"
            if cfg.depth is not None and depth > cfg.depth and info.name not in auto:
                continue
            mark = "auto" if info.name in auto else ("head (input)" if info.name == head else "")
            rows.append([info.name, info.kind, "x".join(map(str, info.shape)), info.params, mark])
        print_table(
            f"{role} {spec.name} on {data.name} ({data.in_channels}x{data.image_size[0]}x{data.image_size[1]} images)",
            ("layer", "type", "output (per image)", "params", "tap"),
            rows,
        )
        result[role] = {
            "name": spec.name,
            "layers": {i.name: list(i.shape) for i in layers},
            "auto": auto,
            "head": head,
        }
    return result


main = hydra_entry("inspect", run)

if __name__ == "__main__":
    main()
