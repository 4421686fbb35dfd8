"""The frozen teacher's outputs read from the cache (built first when missing), instead of running
the teacher at every step."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distill.config.adapters import sweep_scope
from distill.data.base import Splits
from distill.data.streaming import STREAMED, LazyImages
from distill.engine.cache import (
    CachedTeacher,
    CacheKey,
    build_entry,
    entry_dir,
    file_digest,
    images_digest,
    lookup,
    make_view,
)
from distill.engine.loop import autocast, eval_batch
from distill.engine.memo import known, note
from distill.engine.taps import Taps, resolve_layers
from distill.teachers.plan import TeacherPlan, TeacherSetup
from distill.teachers.runtime import teacher_backend

log = logging.getLogger("distill")


def why_not_cached(plan: TeacherPlan, got: TeacherSetup, data: Splits) -> str | None:
    """Why these teachers' outputs cannot be cached (None when they can)."""
    if plan.cache.enabled == "false":
        return "cache.enabled=false"
    if len(got.teachers.models) > 1:
        return "several teachers"
    if getattr(got.teachers.models[0], "takes_index", False):
        return "the teacher is precomputed logits already"
    if got.settings.mix != "none":
        return f"trainer.mix={got.settings.mix} mixes images after the views are drawn"
    if got.path is None or not Path(got.path).is_file():
        return "the teacher has no weights file to key the cache on"
    return None


def teacher_cache(
    got: TeacherSetup, plan: TeacherPlan, data: Splits, device: torch.device
) -> tuple[CachedTeacher | None, Callable[[int], torch.Tensor] | None, dict[str, Any]]:
    """Reads (or first builds) the teacher's outputs from the cache when they can be cached.

    Returns the cached teacher (or None to run the teacher live), the function giving the
    student's training images of an epoch (the views the cache holds), and what happened.
    """
    cache, teachers, teacher_path, settings = plan.cache, got.teachers, got.path, got.settings
    why_not = why_not_cached(plan, got, data)
    if why_not:
        (log.warning if cache.enabled == "true" else log.info)("teacher cache not used: %s", why_not)
        return None, None, {"used": False, "reason": why_not}
    teacher = teachers.models[0]
    views = 1 if data.augment == "none" else int(cache.views or settings.epochs)
    example = data.train_x[:2].to(device).float().div(255)
    tap_names = resolve_layers(teacher, example, plan.layers, "teacher") if plan.layers else []
    # the run's seed draws the views (a seed sweep varies them too) unless cache.seed pins one; no views, no seed
    seed = 0 if data.augment == "none" else int(plan.seed if cache.seed is None else cache.seed)
    key = CacheKey(
        teacher=file_digest(teacher_path),
        images=images_digest(data.train_x),
        dataset=plan.dataset_key,
        augment=data.augment,
        views=views,
        seed=seed,
        taps=tap_names,
        precision=settings.teacher_autocast(),
    )
    run = {"device": device, "channels_last": settings.channels_last}
    run["autocast_ctx"] = autocast(device, settings.teacher_autocast())
    # a sweep's members check an entry against its teacher once: the first to find (or build) it
    scope, checked = sweep_scope(), ("cache_checked", str(entry_dir(cache.dir, key).resolve()))
    entry, wrong = lookup(cache.dir, key, teacher, data.train_x, seed=plan.seed, check=not known(scope, checked), **run)
    backend, t0 = None, time.perf_counter()  # what ran the teacher to build the entry, and when it began
    if entry is None:
        with torch.no_grad():
            feat_numel = sum(int(np.prod(f.shape[1:])) for f in _tap_once(teacher, tap_names, example))
        gb = views * len(data.train_y) * (data.num_classes + feat_numel) * 2 / 1e9
        if gb > cache.max_gb:
            why_not = f"it would take {gb:.1f} GB (> cache.max_gb={cache.max_gb:g}); fewer cache.views fit"
            log.warning("teacher cache not used: %s", why_not)
            return None, None, {"used": False, "reason": why_not}
        # the backend gives the same logits within float noise (it is checked), far below float16's
        fast, backend = teacher_backend(got, plan, data, device)
        entry = build_entry(
            cache.dir,
            key,
            fast.models[0],
            tap_names,
            data.train_x,
            # on a CPU no more images at once than a training step holds, so that the build's activations
            # stay within the training step's
            batch_size=eval_batch(_build_batch(settings, device), data.train_x, device),
            meta={"teacher_path": str(teacher_path), "dataset": data.name},
            replace=wrong,
            num_workers=settings.num_workers,
            **run,
        )
    if entry.built:
        log.info(
            "teacher cache built: %d view(s) of %d images in %.1f s (%s), %s",
            views,
            len(data.train_y),
            time.perf_counter() - t0,
            backend,
            entry.path,
        )
    else:  # found, or finished by another run while this one waited for it
        log.info("teacher cache hit: %s (%d view(s)); the teacher is not run during training", entry.path, views)
        backend = None
    note(scope, checked)
    info = {"used": True, "status": "built" if entry.built else "hit", "built_with": backend, "views": views}
    return CachedTeacher(entry).to(device), _EpochViews(data, views, seed), {**info, "path": str(entry.path)}


def _build_batch(settings: Any, device: torch.device) -> int:
    """The teacher's batch while it builds the cache: ``eval_batch_size``, on a CPU at most ``batch_size``."""
    if device.type == "cpu":
        return min(settings.eval_batch_size, settings.batch_size)
    return settings.eval_batch_size


class _EpochViews:
    """``epoch -> images``: the view of the training images an epoch trains on, the one the entry holds
    (drawn up front in memory; for streamed images, a :class:`TrainingView` the workers decode). A
    class, not a closure: the batch loader travels to worker processes, pickled under spawn."""

    def __init__(self, data: Splits, views: int, seed: int) -> None:
        self.x, self.augment, self.views, self.seed = data.train_x, data.augment, views, seed

    def __call__(self, epoch: int) -> Any:
        if isinstance(self.x, LazyImages):
            return self.x.view(epoch % self.views, self.seed) if self.augment == STREAMED else self.x
        return make_view(self.x, self.augment, epoch % self.views, self.seed)


def _tap_once(teacher: nn.Module, names: list[str], example: torch.Tensor) -> list[torch.Tensor]:
    if not names:
        return []
    with Taps(teacher, names) as taps:
        teacher(example)
        return taps.take()
