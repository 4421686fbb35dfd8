"""One module per stage; each has ``validate(cfg)``, ``run(cfg) -> dict`` and a Hydra ``main``.

Importing this package registers every torchvision classification model under the ``teacher``
and ``student`` config groups, so ``teacher=resnet152`` works without a YAML file per model.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore

from distill import config_dir
from distill.models.registry import torchvision_models

STAGES = ("train", "teacher", "eval", "export", "report")


def _register_models() -> None:
    cs = ConfigStore.instance()
    for group in ("teacher", "student"):
        have = {p.stem for p in (Path(config_dir()) / group).glob("*.yaml")}
        for name in torchvision_models():
            if name not in have:
                node = {"name": name, "kwargs": {}, "weights": None}
                if group == "teacher":
                    node["checkpoint"] = None
                cs.store(group=group, name=name, node=node)


_register_models()
