"""Typed schemas of config groups, registered in Hydra's ConfigStore: a value of the wrong type
(``trainer.batch_size=x``) is refused when the config is composed, before any check or run.

Each group's YAML starts from its schema (``defaults: [/NAME_schema@_here_, _self_]``) and sets
the values, with their meaning in comments. Ranges and choices are checked afterwards, with every
other problem, by :mod:`distill.config.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from distill.engine.settings import TrainerSettings


@dataclass
class CacheConfig:
    """The ``cache`` group: the teacher output cache (``conf/cache/default.yaml``)."""

    enabled: str = "auto"  # auto | true | false
    views: int | None = None
    seed: int | None = None
    dir: str = "${paths.root}/cache"
    max_gb: float = 4.0


SCHEMAS = {"trainer_schema": TrainerSettings, "cache_schema": CacheConfig}


def register_schemas() -> None:
    cs = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        cs.store(name=name, node=node)
