"""A model's description (``ModelSpec``: architecture, classes, input size, normalisation) and building
the model it describes: from scratch, or holding tensors read from a file.

A description read from a file is data: :func:`spec_problem` says what is wrong with it before
anything is built, and names are looked up in the registry's fixed tables, never imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.errors import UserError
from distill.models.registry import HF_PREFIX, TIMM_PREFIX, available_models, build_model
from distill.models.user import is_target


@dataclass
class ModelSpec:
    """What it takes to rebuild a model: architecture and the data it was built for."""

    name: str
    num_classes: int
    in_channels: int
    image_size: list[int]
    mean: list[float]
    std: list[float]
    classes: list[str]
    kwargs: dict[str, Any] = field(default_factory=dict)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_plain(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    return isinstance(v, (str, int, float, bool, type(None)))


def spec_problem(spec: ModelSpec) -> str | None:
    """What is wrong with a model description read from a file (None when it is sound).

    The description is data: its name must be a registered model or ``timm/<name>`` (looked up in
    fixed tables, never imported), its arguments plain values, its sizes whole numbers."""
    # a timm name is a plain model name: timm reads "hf-hub:org/repo" or "local-dir:/path" as places to
    # fetch a config from, which a file must not choose
    timm_name = isinstance(spec.name, str) and re.fullmatch(rf"{TIMM_PREFIX}[A-Za-z0-9_.\-]+", spec.name)
    # a Hugging Face model is rebuilt from the config the file carries (kwargs.config), never from its name
    if isinstance(spec.name, str) and spec.name.startswith(HF_PREFIX):
        from distill.models.hf_models import config_problem

        config = spec.kwargs.get("config") if isinstance(spec.kwargs, dict) else None
        if problem := config_problem(config):
            return problem
    # a user's target is a well-formed dotted path here; importing it needs the user's word (check_trusted)
    elif not isinstance(spec.name, str) or not (spec.name in available_models() or timm_name or is_target(spec.name)):
        return (
            f"name={spec.name!r} is not a model distill knows (a torchvision or distill model, timm/<name>, "
            "or a user's mypkg.module.callable)"
        )
    sizes = {"num_classes": spec.num_classes, "in_channels": spec.in_channels}
    for key, value in sizes.items():
        if not _is_int(value) or value < 1:
            return f"{key}={value!r} must be a whole number >= 1"
    if not (
        isinstance(spec.image_size, list)
        and len(spec.image_size) == 2
        and all(_is_int(v) and v > 0 for v in spec.image_size)
    ):
        return f"image_size={spec.image_size!r} must be two whole numbers"
    for key in ("mean", "std"):
        value = getattr(spec, key)
        ok = (
            isinstance(value, list)
            and value
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
        if not ok:
            return f"{key}={value!r} must be a list of numbers"
    if not (isinstance(spec.classes, list) and all(isinstance(c, str) for c in spec.classes)):
        return "classes must be a list of names"
    if not isinstance(spec.kwargs, dict) or not all(
        isinstance(k, str) and _is_plain(v) for k, v in spec.kwargs.items()
    ):
        return f"kwargs={spec.kwargs!r} must map argument names to plain values (numbers, strings, lists of them)"
    return None


def load_state_into(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path, assign: bool = False) -> None:
    """Loads a full Classifier state dict, or a bare network's one into ``model.net``.
    ``assign``: the model takes the tensors themselves instead of copying them into its own."""
    target = model if {"mean", "std"} <= set(tensors) else model.net
    try:
        target.load_state_dict(tensors, strict=True, assign=assign)
    except RuntimeError as e:
        first = " ".join(str(e).strip().splitlines()[:2])
        raise UserError(f"weights in {path} do not fit the model: {first[:300]}") from None


def build_from_spec(spec: ModelSpec, weights: str | None = None) -> nn.Module:
    """A fresh model of the architecture ``spec`` describes (random or torchvision weights)."""
    return build_model(
        spec.name,
        spec.num_classes,
        spec.in_channels,
        tuple(spec.image_size),
        tuple(spec.mean),
        tuple(spec.std),
        weights=weights,
        kwargs=spec.kwargs,
        classes=spec.classes,
    )


def build_loaded(spec: ModelSpec, tensors: dict[str, torch.Tensor], path: Path) -> nn.Module:
    """The model ``spec`` describes, holding ``tensors`` (read from ``path``).

    Built on the meta device and handed the loaded tensors themselves, so the weights are in
    memory once: no randomly initialised copy beside them (and no time spent initialising it).
    A model with state the file does not carry (non-persistent buffers) is built for real instead.
    """
    try:
        with torch.device("meta"):
            model = build_from_spec(spec)
    except (RuntimeError, NotImplementedError):  # a constructor that reads tensor values (.item(), .tolist())
        model = None
    except UserError as e:  # e.g. arguments the constructor does not take
        raise UserError(f"{path}: {e}") from None
    if model is not None:
        load_state_into(model, tensors, path, assign=True)
    if model is None or any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = build_from_spec(spec)
        load_state_into(model, tensors, path)
    return model


# Descriptions already found buildable (as JSON): a sweep's jobs check one teacher once.
_BUILDABLE: set[str] = set()


def check_buildable(spec: ModelSpec, path: Path) -> None:
    """Raises a UserError naming ``path`` when the model it describes cannot be built (checked on the
    meta device: no memory, no initialisation)."""
    import json
    from dataclasses import asdict

    described = json.dumps(asdict(spec), sort_keys=True)
    if described in _BUILDABLE:
        return
    try:
        with torch.device("meta"):
            build_from_spec(spec)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except (RuntimeError, NotImplementedError):  # needs real tensors to build: checked when it is built
        return
    _BUILDABLE.add(described)
