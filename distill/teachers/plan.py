"""What a run asks of its teachers, read once from the config into a typed plan.

The rest of :mod:`distill.teachers` takes this plan, never the Hydra config: where the teacher
comes from (a run folder or weights file, the automatic teacher, an ONNX or logits file, online
peers), what the cache may do, and which teacher layers the method reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from distill.config.adapters import BLACK_BOX, as_list, dataset_key, uses_teacher
from distill.config.checks import plain_value
from distill.engine.loop import Teachers
from distill.engine.settings import TrainerSettings


@dataclass(frozen=True)
class CachePlan:
    """``cache.*``: whether and how the frozen teacher's outputs are kept on disk."""

    enabled: str  # auto | true | false
    views: int | None  # augmented views kept (None: one per epoch)
    max_gb: float
    seed: int | None  # the seed drawing the views (None: the run's)
    dir: Path


@dataclass(frozen=True)
class TeacherPlan:
    """The teachers of one ``train`` run."""

    needed: bool  # the loss reads a teacher (alpha > 0, or a method that does)
    name: str  # teacher.name: a model name, or onnx / logits for a black box
    node: dict[str, Any]  # the teacher config node, to describe a model without a weights file
    cache: CachePlan  # its dir also keeps the onnxruntime exports and speed records
    checkpoint: str | None = None  # teacher.checkpoint: a run folder or weights file
    path: str | None = None  # teacher.path of a black box
    extra: list[str] = field(default_factory=list)  # distill.teachers: more frozen teachers
    online: bool = False  # peers trained from scratch beside the student
    mutual: bool = False  # ... learning from each other (DML)
    peers: list[str] = field(default_factory=list)  # distill.peers (empty: the teacher's model)
    peer_temperature: float = 1.0  # the temperature of the student's method, for the peers' own loss
    layers: Any = None  # distill.teacher_layers the method reads (None: logits only)
    seed: int = 0
    dataset_key: dict[str, Any] = field(default_factory=dict)
    find_or_train: Callable[..., Path] | None = None  # the automatic teacher's run folder (may train, classes)

    @property
    def black_box(self) -> bool:
        return self.name in BLACK_BOX

    @property
    def reads_layers(self) -> bool:
        return bool(self.layers)


def teacher_plan(cfg: DictConfig) -> TeacherPlan:
    """The plan of ``cfg`` (a composed ``train`` config, validated)."""
    from distill.teachers import auto

    d, cache = cfg.distill, cfg.get("cache")
    method = d.get("method")
    beta = d.get("beta") or 0
    # the peers learn at the temperature the student's method uses (DML: 1), so both sides match
    temperature = method.get("temperature", d.temperature) if method is not None else d.temperature
    return TeacherPlan(
        needed=uses_teacher(cfg),
        name=str(cfg.teacher.name),
        node=OmegaConf.to_container(cfg.teacher, resolve=True),
        checkpoint=None if cfg.teacher.get("checkpoint") is None else str(cfg.teacher.checkpoint),
        path=None if cfg.teacher.get("path") is None else str(cfg.teacher.path),
        extra=as_list(d.get("teachers")),
        online=bool(d.get("online", False)),
        mutual=bool(d.get("mutual", False)),
        peers=as_list(d.get("peers")),
        peer_temperature=float(temperature),
        layers=plain_value(d.get("teacher_layers")) if beta > 0 else None,
        cache=CachePlan(str(cache.enabled).lower(), cache.views, float(cache.max_gb), cache.seed, Path(str(cache.dir))),
        seed=int(cfg.seed),
        dataset_key=dataset_key(cfg),
        find_or_train=partial(auto.run_folder, cfg),
    )


@dataclass
class TeacherSetup:
    """The run's teachers and what was decided about them."""

    teachers: Teachers | None  # what each training step reads (None: no teacher)
    model: nn.Module | None  # the teacher the summary describes (online: the first peer)
    path: Path | None  # its weights file (or black-box file); None for online peers
    settings: TrainerSettings  # the run's settings, with the teacher runtime measured for this CPU
    params: int = 0  # the teacher's parameter count, kept when onnxruntime takes its weights
    view_fn: Callable[[int], torch.Tensor] | None = None  # an epoch's training images, when cached
    cache: dict[str, Any] = field(default_factory=lambda: {"used": False, "reason": "no teacher"})
    backend: str | None = None  # what ran the teacher at every step (None: the cache, or no teacher)
    name: str | None = None  # the model its weights file describes (teacher.name may say another)

    @property
    def describable(self) -> bool:
        """Whether the teacher can be run on test images (not precomputed logits)."""
        return self.model is not None and not getattr(self.model, "takes_index", False)
