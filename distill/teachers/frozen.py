"""Frozen teachers: a trained model from a weights file (the automatic teacher's included), or a
black box known only by its outputs (an ONNX file, precomputed logits)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from distill.config.adapters import model_spec, sweep_scope
from distill.data.base import Splits
from distill.engine import distributed as dist
from distill.engine.checkpoint import read_weights, spec_of, weights_path
from distill.engine.memo import remembered
from distill.engine.runs import RunDir
from distill.engine.settings import TrainerSettings
from distill.errors import UserError
from distill.models.logits_teacher import LogitsFileTeacher
from distill.models.onnx_teacher import OnnxTeacher
from distill.models.spec import build_loaded
from distill.models.user import trust_state
from distill.teachers.plan import TeacherPlan

log = logging.getLogger("distill")


def teacher_weights(plan: TeacherPlan, classes: list[str] | None = None) -> Path:
    """The weights file to load the teacher from, training the teacher first if needed (``classes``:
    the dataset's, so that a pretrained teacher that classifies them already is kept as it is)."""
    if plan.checkpoint is not None:
        return weights_path(plan.checkpoint)
    return RunDir(plan.find_or_train(dist.world_size() == 1, classes)).best


def load_teacher(
    plan: TeacherPlan, data: Splits, device: torch.device, settings: TrainerSettings, weights: Path | None = None
) -> tuple[nn.Module, Path]:
    """The teacher in eval mode without gradients, checked against the dataset's classes.
    ``weights``: the file to load (a resumed run's teacher), instead of resolving it again."""
    if plan.black_box:
        return black_box_teacher(plan, data, device, settings), Path(str(plan.path))
    return load_frozen(weights or teacher_weights(plan, list(data.classes)), data, device, settings, plan.node)


def black_box_teacher(plan: TeacherPlan, data: Splits, device: torch.device, settings: TrainerSettings) -> nn.Module:
    """A teacher known only by its outputs: an ONNX file, or precomputed logits of the training images."""
    path = str(plan.path)
    if plan.name == "onnx":
        teacher = OnnxTeacher(path, threads=settings.threads)
        teacher.check_input(data.in_channels, *data.image_size)
        if teacher.classes is not None and list(teacher.classes) != list(data.classes):
            raise UserError(
                f"the ONNX teacher {path} has classes {teacher.classes[:5]}... but dataset {data.name} has "
                f"{data.classes[:5]}...; use a teacher made for this dataset"
            )
        if teacher.num_classes is not None and teacher.num_classes != data.num_classes:
            raise UserError(
                f"the ONNX teacher {path} gives {teacher.num_classes} logits, dataset {data.name} has "
                f"{data.num_classes} classes"
            )
    else:
        teacher = LogitsFileTeacher(path)
        teacher.check(len(data.train_y), data.classes)
        teacher.takes_index = True
        if data.augment != "none":
            log.warning(
                "the precomputed logits in %s are for the original training images, but the student sees "
                "augmented ones (dataset.augment=%s); dataset.augment=none matches them exactly",
                path,
                data.augment,
            )
    log.info("black-box teacher: %s (%s)", path, type(teacher).__name__)
    return teacher.to(device).eval()


def load_frozen(
    path: Path, data: Splits, device: torch.device, settings: TrainerSettings, node: dict | None = None
) -> tuple[nn.Module, Path]:
    """A trained model from a weights file, frozen in eval mode, checked against the dataset.
    ``node``: the model's config node, for a weights file that does not describe its model.
    A sweep's members share one loaded teacher (the same file, unchanged since: its size, mtime and
    ctime are in the key, and what the user trusts); nothing changes a frozen teacher's weights, and
    a method's hooks on it are removed at the end of every run."""
    try:
        st = Path(path).stat()
    except OSError:  # read_weights says what is wrong with the path, in one line
        st = None
    key = None if st is None else (
        "teacher_model", str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, str(device),
        settings.channels_last, tuple(data.classes), tuple(data.image_size), repr(node), trust_state(),
    )  # fmt: skip
    scope = sweep_scope() if key is not None else None
    model = remembered(scope, key or (), lambda: _load_frozen(path, data, device, settings, node), keep_one=True)
    log.info("teacher %s loaded from %s", model.distill_name, path)
    return model, path


def _load_frozen(
    path: Path, data: Splits, device: torch.device, settings: TrainerSettings, node: dict | None
) -> nn.Module:
    tensors, meta = read_weights(path)
    spec = spec_of(meta, path) or (model_spec(node, data) if node is not None else None)
    if spec is None:
        raise UserError(f"{path} carries no model description; give a weights file written by distill")
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
    model = build_loaded(spec, tensors, path)
    del tensors  # the model holds them now; the channels-last copy below must not sit beside them
    model.to(device).eval().requires_grad_(False)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    model.distill_name = spec.name  # what the file holds, whatever teacher.name says
    return model
