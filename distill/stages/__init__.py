"""One module per stage; each has ``validate(cfg)``, ``run(cfg) -> dict`` and a Hydra ``main``.

Importing this package registers the models of ``conf/models.yaml`` and every torchvision
classification model under both the ``teacher`` and ``student`` config groups (a teacher node also
has ``checkpoint: null``), so ``teacher=resnet152`` works without a YAML file per model and role,
and the ``${run_folder:PATH}`` resolver used by ``eval`` and ``export``.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from distill import config_dir
from distill.config.schema import register_schemas
from distill.engine.runs import RunDir
from distill.models.names import torchvision_names


def _register_models() -> None:
    """Each model once, for both roles; a file ``conf/<role>/NAME.yaml`` (``onnx``, ``logits``) wins."""
    shipped = yaml.safe_load((Path(config_dir()) / "models.yaml").read_text()) or {}  # data: names, kwargs
    nodes = {name: {"name": name, "kwargs": {}, "weights": None} for name in torchvision_names()}
    nodes.update(shipped)
    # any model may be replaced by the user's own callable: student._target_=mypkg.models.make_net
    nodes = {name: {"_target_": None, **node} for name, node in nodes.items()}
    cs = ConfigStore.instance()
    for group in ("teacher", "student"):
        have = {p.stem for p in (Path(config_dir()) / group).glob("*.yaml")}
        for name, node in nodes.items():
            if name not in have:
                cs.store(group=group, name=name, node={**node, "checkpoint": None} if group == "teacher" else node)


def _run_folder(path: str) -> str:
    """The run folder of a run folder, or of a weights file inside one."""
    p = Path(path)
    return str(RunDir.of_weights(p).path if p.suffix == ".safetensors" else p)


_register_models()
register_schemas()
if not OmegaConf.has_resolver("run_folder"):
    OmegaConf.register_new_resolver("run_folder", _run_folder)
