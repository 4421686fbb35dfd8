"""The views a cached teacher saw are drawn from the run's seed (unless cache.seed pins one), and the
student trains on exactly those views."""

from __future__ import annotations

import torch

from distill.config.adapters import load_data, setup
from distill.engine.cache import make_view
from distill.engine.loop import Teachers
from distill.models.registry import build_model
from distill.teachers import TeacherSetup, teacher_plan
from distill.teachers.cached import teacher_cache
from tests.conftest import FAST


def _cache(make_cfg, tmp_path, *overrides: str) -> tuple:
    cfg = make_cfg(
        "train",
        ["dataset=digits", "teacher=mlp", "student=mlp", "trainer.epochs=2", "trainer.teacher_backend=torch"]
        + [*FAST, *overrides],
    )
    settings, device = setup(cfg)
    data = load_data(cfg)
    torch.manual_seed(0)
    teacher = build_model("mlp", data.num_classes, 1, tuple(data.image_size), data.mean, data.std).eval()
    weights = tmp_path / "teacher.bin"  # the cache keys on the file's digest; its content is not read here
    weights.write_bytes(b"teacher")
    cached, view_fn, info = teacher_cache(
        TeacherSetup(Teachers([teacher]), teacher, weights, settings), teacher_plan(cfg), data, device
    )
    return cached, view_fn, info, data


def test_each_seed_of_a_sweep_draws_its_own_views_and_cache_seed_pins_them(make_cfg, tmp_path):
    built = {}
    for seed in (1, 2):
        cached, view_fn, info, data = _cache(make_cfg, tmp_path, f"seed={seed}")
        assert info["status"] == "built" and cached.entry.meta["key"]["seed"] == seed
        for epoch in (0, 1, 3):  # the student's images are the views the entry was built on
            assert torch.equal(view_fn(epoch), make_view(data.train_x, "shift", epoch % 2, seed))
        built[seed] = info["path"]
    assert built[1] != built[2]
    assert not torch.equal(make_view(data.train_x, "shift", 0, 1), make_view(data.train_x, "shift", 0, 2))

    cached, view_fn, info, data = _cache(make_cfg, tmp_path, "seed=7", "cache.seed=1")
    assert info["status"] == "hit" and info["path"] == built[1], "an explicit cache.seed wins over the run's"
    assert torch.equal(view_fn(1), make_view(data.train_x, "shift", 1, 1))

    cached, view_fn, info, data = _cache(make_cfg, tmp_path, "seed=1", "dataset.augment=none")
    assert info["status"] == "built" and cached.entry.meta["key"]["seed"] == 0, "no augmentation, nothing to seed"
    cached, view_fn, info, data = _cache(make_cfg, tmp_path, "seed=2", "dataset.augment=none")
    assert info["status"] == "hit" and view_fn(3) is data.train_x
