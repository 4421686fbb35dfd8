"""Data handed over from Python (``distill.api.run(..., dataset=splits)``), as a dataset config node.

The config names the data by a fingerprint of its contents (``dataset=python
dataset.fingerprint=...``), so the run records which data it learned from, a teacher trained on
other data is never reused for it, and the teacher cache keys on it. The loader below returns the
object itself while :func:`providing` hands it over; a config read back later (a resumed run)
without the object is refused with a line that says how to give it again.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import torch

from distill.data.augment import AUGMENTS
from distill.data.base import Splits, channel_stats
from distill.errors import UserError

# the config group option that names given data: dataset=python
OPTION = "python"
_PARTS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
_GIVEN: contextvars.ContextVar[tuple[str, Splits] | None] = contextvars.ContextVar("distill_given_data", default=None)


def as_splits(obj: Any) -> Splits:
    """``obj`` (a :class:`Splits`, or any object with its attributes) checked and as :class:`Splits`:
    uint8 NCHW images, int64 labels in ``range(len(classes))``; ``mean``/``std`` default to the
    training images' own, ``augment`` to ``none``."""
    missing = [a for a in (*_PARTS, "classes") if not hasattr(obj, a)]
    if missing:
        raise UserError(
            f"dataset= takes a distill.data.base.Splits or an object with its attributes; "
            f"{type(obj).__name__} has no {', '.join(missing)}"
        )
    parts = {a: getattr(obj, a) for a in _PARTS}
    problems = [f"{a} is a {type(v).__name__}, not a torch.Tensor" for a, v in parts.items() if not torch.is_tensor(v)]
    if problems:
        raise UserError(f"dataset: {'; '.join(problems)}")
    classes = [str(c) for c in obj.classes]
    channels = parts["train_x"].shape[1] if parts["train_x"].dim() == 4 else None
    for split in ("train", "val", "test"):
        x, y = parts[f"{split}_x"], parts[f"{split}_y"]
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != channels:
            problems.append(
                f"{split}_x must be uint8 images (N, C, H, W) of one channel count, got {x.dtype} {tuple(x.shape)}"
            )
        if y.dim() != 1 or len(y) != len(x) or y.is_floating_point():
            problems.append(f"{split}_y must be {len(x)} integer labels, got {y.dtype} {tuple(y.shape)}")
        elif len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(classes):
            problems.append(f"{split}_y must lie in 0..{len(classes) - 1} (one per class name)")
        if len(x) == 0:
            problems.append(f"{split}_x is empty")
    augment = str(getattr(obj, "augment", "none"))
    if augment not in AUGMENTS:
        problems.append(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
    if problems:
        raise UserError(f"dataset: {'; '.join(problems)}")
    mean, std = (getattr(obj, "mean", None), getattr(obj, "std", None))
    if mean is None or std is None:
        mean, std = channel_stats(parts["train_x"])
    return Splits(
        name=str(getattr(obj, "name", OPTION)),
        **{a: v.contiguous() if a.endswith("_x") else v.long() for a, v in parts.items()},
        classes=classes,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        augment=augment,
        skipped=list(getattr(obj, "skipped", [])),
    )


def fingerprint(data: Splits) -> str:
    """A hash of everything the data's runs depend on: every split's tensors, the class names and
    the normalisation (16 hex digits)."""
    h = hashlib.sha256(json.dumps([data.classes, list(data.mean), list(data.std)]).encode())
    for part in _PARTS:
        t = getattr(data, part)
        h.update(f"{part}{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def config_node(augment: str = "none") -> dict[str, Any]:
    """The ``dataset=python`` option: the loader below, the fingerprint of the data it must get, and
    the data's own augmentation (``dataset.augment`` may change it)."""
    return {"_target_": f"{__name__}.given_data", "fingerprint": "???", "augment": augment}


@contextlib.contextmanager
def providing(data: Splits | None) -> Iterator[str | None]:
    """Within this block ``dataset=python dataset.fingerprint=<yielded>`` loads ``data`` (None: nothing
    is given, and None is yielded)."""
    if data is None:
        yield None
        return
    key = fingerprint(data)
    token = _GIVEN.set((key, data))
    try:
        yield key
    finally:
        _GIVEN.reset(token)


def given_data(fingerprint: str, augment: str = "none") -> Splits:
    """The data handed over by :func:`providing` (the ``_target_`` of ``dataset=python``), with the
    config's ``augment``."""
    given = _GIVEN.get()
    if given is None:
        raise UserError(
            f"dataset={OPTION} is data given from Python (fingerprint {fingerprint}): run it, or resume it, "
            "with distill.api.run(..., dataset=<the same data>)"
        )
    if given[0] != str(fingerprint):
        raise UserError(
            f"the data given (fingerprint {given[0]}) is not the data this run was started with (fingerprint "
            f"{fingerprint}): resume it with the same data"
        )
    return dataclasses.replace(given[1], augment=str(augment))
