"""Streaming image files (distill/data/streaming.py): the recipes at full resolution, training views that
are a pure function of (seed, view, index), the same batches with or without worker processes."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from distill.data.streaming import RATIO, SCALE, ImageFiles, crop_box, eval_size
from distill.errors import UserError
from tests.conftest import write_image_folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.RandomState(0)
    paths = []
    for i, (w, h) in enumerate([(300, 260), (480, 256), (256, 500), (400, 400), (333, 290), (260, 470)]):
        path = root / f"{i}.jpg"
        Image.fromarray(rng.randint(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(path, quality=90)
        paths.append(path)
    return paths


def test_crop_boxes_keep_torchvisions_ranges_and_fall_back_to_the_central_crop():
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(20, 600, size=2))
        top, left, h, w = crop_box(height, width, rng)
        assert 0 <= top <= height - h and 0 <= left <= width - w and h > 0 and w > 0
        fallback = (top, left) == ((height - h) // 2, (width - w) // 2) and (h == height or w == width)
        if not fallback:  # a drawn crop: torchvision's scale and ratio ranges (up to rounding to pixels)
            assert SCALE[0] * 0.9 <= h * w / (height * width) <= SCALE[1]
            assert RATIO[0] * 0.9 <= w / h <= RATIO[1] * 1.1
    # a strip of 10 x 1000 px: no try fits, the fallback is the central crop at the widest ratio
    assert crop_box(10, 1000, np.random.default_rng(1)) == (0, 493, 10, 13)


def test_a_training_view_is_a_pure_function_of_seed_view_and_index(files):
    a = ImageFiles(files, [0, 1, 0, 1, 0, 1], 64, train=True, seed=5)
    b = ImageFiles(files, [0, 1, 0, 1, 0, 1], 64, train=True, seed=5)
    first = [a.view_of(i, view=2) for i in reversed(range(len(files)))][::-1]
    assert all(torch.equal(first[i], b.view_of(i, view=2)) for i in range(len(files)))
    assert all(x.shape == (3, 64, 64) and x.dtype == torch.uint8 for x in first)
    assert not all(torch.equal(first[i], a.view_of(i, view=3)) for i in range(len(files))), "another view"
    other = ImageFiles(files, [0] * 6, 64, train=True, seed=6)
    assert not all(torch.equal(first[i], other.view_of(i, view=2)) for i in range(len(files))), "another seed"
    policy = ImageFiles(files, [0] * 6, 64, train=True, seed=5, policy="trivialaugment")
    torch.manual_seed(123)
    once = policy.view_of(1, view=0)
    torch.manual_seed(999)  # torch's own generator does not decide the policy's draws, nor do they move it
    before = torch.get_rng_state()
    assert torch.equal(once, policy.view_of(1, view=0)) and torch.equal(before, torch.get_rng_state())


def test_the_eval_recipe_is_torchvisions_resize_and_center_crop(files):
    from torchvision.transforms import v2

    data = ImageFiles(files, [0] * 6, 224)
    assert eval_size(224) == 256 and math.floor(224 / 0.875) == 256
    reference = v2.Compose([v2.Resize(256), v2.CenterCrop(224), v2.PILToTensor()])
    for i in range(len(files)):
        with Image.open(files[i]) as img:
            assert torch.equal(data[i][0], reference(img.convert("RGB"))), files[i]


def test_a_jpeg_far_larger_than_its_crop_is_decoded_smaller_with_the_same_picture(files):
    """At 64 px the 256-500 px files are decoded at 1/2 or 1/4 scale (PIL's draft): the result stays
    within JPEG noise of decoding the whole file first."""
    from torchvision.transforms import v2

    data = ImageFiles(files, [0] * 6, 64)
    reference = v2.Compose([v2.Resize(eval_size(64)), v2.CenterCrop(64), v2.PILToTensor()])
    for i in range(len(files)):
        with Image.open(files[i]) as img:
            full = reference(img.convert("RGB")).float()
        assert data[i][0].shape == (3, 64, 64)
        assert (data[i][0].float() - full).abs().mean() < 12, files[i]  # random noise pixels: the worst case


def test_worker_processes_give_the_same_batches_as_the_main_process(files):
    data = ImageFiles(files, [0, 1, 2, 0, 1, 2], 48, train=True, seed=1)
    data.set_view(4)
    alone = [b for b in DataLoader(data, batch_size=4, num_workers=0)]
    workers = [b for b in DataLoader(data, batch_size=4, num_workers=2)]
    for (x0, y0, i0), (x1, y1, i1) in zip(alone, workers, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1) and torch.equal(i0, i1)


def test_an_unreadable_file_is_one_line_naming_it(tmp_path, files):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(UserError, match=f"{bad}"):
        ImageFiles([bad], [0], 32)[0]
    with pytest.raises(UserError, match="dataset.policy must be one of none, randaugment, trivialaugment"):
        ImageFiles(files, [0] * 6, 32, train=True, policy="autoaugment")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("photos"), 40, seed=1)


def test_in_memory_and_streamed_folders_give_the_same_classes_splits_and_evaluation(folder, caplog):
    from distill.data.imagefolder import imagefolder
    from distill.data.streaming import STREAMED, LazyImages

    held = imagefolder(str(folder), image_size=24, in_memory=True)
    with caplog.at_level("INFO", logger="distill"):
        streamed = imagefolder(str(folder), image_size=24, in_memory="auto", memory_gb=1e-6)
    assert "streamed from the files" in caplog.text
    assert isinstance(streamed.train_x, LazyImages) and streamed.augment == STREAMED
    assert streamed.classes == held.classes and streamed.image_size == held.image_size == (24, 24)
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(streamed, f"{part}_y"), getattr(held, f"{part}_y"))
        assert torch.equal(getattr(streamed, f"{part}_x")[:], getattr(held, f"{part}_x")), part  # the same pixels
    assert not isinstance(imagefolder(str(folder), image_size=24).train_x, LazyImages), "auto: small stays in memory"
    with pytest.raises(UserError, match="dataset.in_memory must be auto, true or false"):
        imagefolder(str(folder), image_size=24, in_memory="sometimes")


def test_streamed_batches_are_the_same_from_worker_processes_and_after_a_resume(folder):
    from distill.data.imagefolder import imagefolder
    from distill.engine.batches import BatchLoader

    data = imagefolder(str(folder), image_size=24, in_memory=False)

    def epoch(workers: int, epoch: int, start: int = 0) -> list[torch.Tensor]:
        loader = BatchLoader(data.train_x, data.train_y, 8, augment=data.augment, seed=2, num_workers=workers)
        loader.set_epoch(epoch)
        return [xb for xb, _ in loader.batches(start)]

    alone = epoch(0, 1)
    assert all(torch.equal(a, b) for a, b in zip(alone, epoch(2, 1), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(alone[2:], epoch(0, 1, start=2), strict=True)), "a resumed epoch"
    assert not torch.equal(alone[0], epoch(0, 2)[0]), "each epoch its own views"


def test_lazy_images_index_as_a_tensor_does(folder):
    from distill.data.imagefolder import imagefolder

    held = imagefolder(str(folder), image_size=16, in_memory=True)
    lazy = imagefolder(str(folder), image_size=16, in_memory=False).test_x
    mask = torch.arange(len(lazy)) % 3 == 0
    for key in (3, -1, np.int64(2), slice(1, 7, 2), [4, 0], torch.tensor([5, 1]), mask, slice(5, 5), torch.tensor([])):
        ref = key.long() if isinstance(key, torch.Tensor) and key.dtype.is_floating_point else key
        assert torch.equal(lazy[key], held.test_x[ref]), key
    with pytest.raises(IndexError):
        lazy[torch.tensor([True, False])]


def test_a_streamed_folder_without_test_augment_none_and_bad_settings(folder, tmp_path):
    import shutil

    from distill.data.imagefolder import imagefolder

    no_test = tmp_path / "no_test"
    shutil.copytree(folder, no_test)
    shutil.rmtree(no_test / "test")
    data = imagefolder(str(no_test), image_size=16, in_memory=False, augment="none")
    assert len(data.test_y) == len(data.val_y) == 10 and data.augment == "none"
    for kwargs, needle in (
        ({"memory_gb": "lots"}, "dataset.memory_gb must be a number >= 0, got 'lots'"),
        ({"policy": "autoaugment"}, "dataset.policy must be one of none, randaugment, trivialaugment"),
    ):
        with pytest.raises(UserError, match=needle):
            imagefolder(str(folder), image_size=16, **kwargs)


def test_a_truncated_jpeg_when_streaming_is_skipped_or_stops_the_run_in_one_line(folder, tmp_path):
    import shutil

    from distill.data.imagefolder import imagefolder
    from distill.data.streaming import STREAMED, LazyImages
    from distill.engine.batches import BatchLoader

    root = tmp_path / "cut"
    shutil.copytree(folder, root)
    victim = sorted((root / "train" / "4").iterdir())[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    skipped = imagefolder(str(root), image_size=16, in_memory=False, on_bad_image="skip")
    assert len(skipped.skipped) == 1 and str(victim) in skipped.skipped[0] and len(skipped.train_y) == 19
    with pytest.raises(UserError) as raised:  # headers only, but the statistics' sample reads every file here
        imagefolder(str(root), image_size=16, in_memory=False)
    assert str(raised.value).startswith(f"cannot decode image {victim}: image file is truncated")
    files = sorted((root / "train").rglob("*.jpg"))  # in a larger folder it is found by a worker, mid-epoch
    lazy = LazyImages(files, [0] * len(files), 16)
    loader = BatchLoader(lazy, torch.zeros(len(files), dtype=torch.long), 4, augment=STREAMED, num_workers=2)
    with pytest.raises(UserError) as raised:
        list(loader)
    assert str(raised.value).startswith(f"cannot decode image {victim}: image file is truncated")
    assert "\n" not in str(raised.value)


def test_a_teacher_cache_of_streamed_views_holds_the_live_teachers_outputs_on_the_views_trained_on(folder, tmp_path):
    """Built in worker processes, batch by batch (a view of a folder never held whole); each row is
    the teacher's output on the view the student's loader regenerates for that epoch and index."""
    from distill.data.imagefolder import imagefolder
    from distill.engine.batches import BatchLoader
    from distill.engine.cache import CachedTeacher, CacheKey, build_entry, images_digest, lookup
    from distill.models.registry import build_model

    data = imagefolder(str(folder), image_size=24, in_memory=False)
    torch.manual_seed(0)
    teacher = build_model("lenet5", 10, 3, (24, 24), (0.5,) * 3, (0.25,) * 3).eval()
    key = CacheKey(teacher="t" * 64, images=images_digest(data.train_x), dataset={"name": "photos"},
                   augment=data.augment, views=2, seed=3)  # fmt: skip
    run = {"device": torch.device("cpu")}
    entries = [build_entry(tmp_path / str(w), key, teacher, [], data.train_x, batch_size=7, num_workers=w, **run)
               for w in (0, 2)]  # fmt: skip
    assert np.array_equal(entries[0].logits, entries[1].logits), "the same rows whatever the worker count"
    cached = CachedTeacher(entries[0])
    for epoch in (0, 1, 2):
        view = data.train_x.view(epoch % 2, seed=3)
        loader = BatchLoader(view, data.train_y, 8, seed=3, with_index=True)
        loader.set_epoch(epoch)
        cached.set_epoch(epoch)
        xb, _, index = next(iter(loader))
        assert torch.equal(xb, data.train_x.train_batch(index, view=epoch % 2, seed=3).float() / 255)
        with torch.no_grad():
            torch.testing.assert_close(cached(index), teacher(xb), atol=2e-2, rtol=1e-2)  # float16 storage
    assert not np.array_equal(entries[0].logits[0], entries[0].logits[1]), "each view its own crops"
    found, wrong = lookup(tmp_path / "0", key, teacher, data.train_x, seed=5, **run)
    assert found is not None and wrong is None
    other = build_model("lenet5", 10, 3, (24, 24), (0.5,) * 3, (0.25,) * 3).eval()
    assert lookup(tmp_path / "0", key, other, data.train_x, seed=5, **run)[1] is not None, "another teacher"
    first = data.train_x.eval_files.files[0]
    st = os.stat(first)
    os.utime(first, ns=(0, 0))
    assert images_digest(data.train_x) != key.images, "a file changed on disk: another entry"
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_streamed_images_are_predicted_in_workers_in_cpu_sized_batches_with_the_same_logits(folder):
    from distill.data.imagefolder import imagefolder
    from distill.data.streaming import LazyImages
    from distill.engine.loop import CPU_EVAL_PIXELS, eval_batch, predict
    from distill.models.registry import build_model

    held = imagefolder(str(folder), image_size=24, in_memory=True)
    files = imagefolder(str(folder), image_size=24, in_memory=False).train_x.eval_files
    lazy = LazyImages(files.files * 4, files.labels.tolist() * 4, 24)  # 80 images: decoded in workers
    torch.manual_seed(0)
    model = build_model("lenet5", 10, 3, (24, 24), (0.5,) * 3, (0.25,) * 3)
    streamed = predict(model, lazy, batch_size=512, num_workers=2)
    torch.testing.assert_close(streamed, predict(model, held.train_x.repeat(4, 1, 1, 1), batch_size=7))
    assert eval_batch(512, torch.zeros(1, 3, 224, 224), "cpu") == 32 == max(32, CPU_EVAL_PIXELS // 224**2)
    assert eval_batch(512, torch.zeros(1, 3, 64, 64), "cpu") == 128 and eval_batch(512, lazy, "cpu") == 512
    assert eval_batch(512, torch.zeros(1, 3, 224, 224), "cuda") == 512 and eval_batch(16, lazy, "cpu") == 16


def test_a_cache_build_meeting_a_bad_file_in_a_worker_says_one_line_and_epoch_views_pickle(folder, tmp_path):
    import pickle
    from types import SimpleNamespace

    from distill.data.streaming import STREAMED, LazyImages
    from distill.engine.cache.keys import view_batches
    from distill.teachers.cached import _EpochViews

    good = sorted((folder / "train").rglob("*.jpg"))[0]
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    lazy = LazyImages([good, bad], [0, 0], 16)
    with pytest.raises(UserError) as raised:
        list(view_batches(lazy, STREAMED, 0, 0, batch_size=2, num_workers=1))
    assert "\n" not in str(raised.value) and str(raised.value).startswith(f"cannot decode image {bad}")
    views = pickle.loads(pickle.dumps(_EpochViews(SimpleNamespace(train_x=lazy, augment=STREAMED), 2, 5)))  # spawn
    assert torch.equal(views(3)[[0]], lazy.train_batch([0], view=1, seed=5))
