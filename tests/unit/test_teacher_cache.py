"""The teacher cache: same outputs as the live teacher, a key that changes with every input, views
the student can regenerate."""

import dataclasses

import numpy as np
import torch

from distill.engine.cache import CachedTeacher, CacheKey, build_entry, list_entries, make_view, open_entry
from distill.engine.taps import Taps
from distill.models.registry import build_model


def _teacher():
    torch.manual_seed(0)
    return build_model("lenet5", 10, 1, (8, 8), (0.5,), (0.25,)).eval()


def _key(**changes) -> CacheKey:
    key = CacheKey(
        teacher="t" * 64,
        images="i" * 64,
        dataset={"name": "digits"},
        augment="shift",
        views=3,
        seed=0,
        taps=["net.features.3"],
    )
    return dataclasses.replace(key, **changes)


def test_every_input_of_the_outputs_changes_the_key():
    base = _key().digest()
    for change in (
        {"teacher": "u" * 64},
        {"images": "j" * 64},
        {"augment": "none"},
        {"views": 4},
        {"seed": 1},
        {"taps": []},
        {"precision": "bf16-mixed"},
        {"dataset": {"name": "digits", "val_fraction": 0.2}},
        {"distill_version": "0.0.0"},
        {"torch_version": "1.0.0"},
        {"augment_code": "0" * 12},
    ):
        assert _key(**change).digest() != base, change
    assert _key().digest() == base


def test_views_are_regenerated_identically_and_differ_between_views():
    x = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(make_view(x, "shift", 1, 5), make_view(x, "shift", 1, 5))
    assert not torch.equal(make_view(x, "shift", 0, 5), make_view(x, "shift", 1, 5))
    assert make_view(x, "none", 3, 5) is x


def test_cached_outputs_match_the_live_teacher_on_the_same_views(tmp_path):
    teacher = _teacher()
    x = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8)
    key = _key()
    entry = build_entry(tmp_path, key, teacher, key.taps, x, device=torch.device("cpu"), batch_size=64)
    assert entry.logits.shape == (3, 300, 10) and entry.logits.dtype == np.float16
    assert entry.feats[0].shape == (3, 300, 16, 10, 10)
    cached = CachedTeacher(entry)
    index = torch.tensor([299, 3, 150, 3])
    for epoch in (0, 4):  # epoch 4 reads view 1
        cached.set_epoch(epoch)
        view = make_view(x, "shift", epoch % 3, key.seed)[index].float() / 255
        with torch.no_grad(), Taps(teacher, key.taps) as taps:
            live = teacher(view)
            (live_feat,) = taps.take()
        torch.testing.assert_close(cached(index), live, atol=2e-2, rtol=1e-2)  # float16 storage
        torch.testing.assert_close(cached.feats(index)[0], live_feat, atol=2e-2, rtol=1e-2)
    # Reopened from disk: complete, listed, same numbers.
    again = open_entry(entry.path)
    assert again is not None and np.array_equal(again.logits, entry.logits)
    assert [r["path"] for r in list_entries(tmp_path)] == [entry.path]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder or lock left
