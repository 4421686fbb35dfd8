"""Teacher outputs computed once, stored memory-mapped, and read by every later epoch, run and sweep.

An entry holds, for K views of every training image, the teacher's logits and the features of
the layers a method reads, in float16, one ``.npy`` file per kind (never a file per sample):

    <cache>/<key>/logits.npy      (K, N, classes)      float16
    <cache>/<key>/feat_<j>.npy    (K, N, *shape)       float16
    <cache>/<key>/meta.json       what the key covers, shapes, seeds, build time

Without random augmentation K = 1 and the view is the image itself. With it, view k of every
image is drawn from a seed stored with the outputs (chunk c of view k from the generator seeded by
``(seed, k, c)``), so the student's loader regenerates exactly the views the teacher saw (epoch e
uses view e mod K) without storing any image.

The key is a hash of everything the outputs depend on: the teacher's weights (file digest), the
training images themselves (digest of the uint8 tensor), the dataset config, the augmentation and
the code that draws it, K and the seed, the tapped layers, the teacher's precision, and the
versions of distill and torch. A changed teacher, image, transform or seed gives a new key, so a
stale entry is never read; a hit is still spot-checked against the live teacher (:func:`lookup`).

An entry appears whole or not at all: written in a temporary folder ``.<key>.<random>``, then
renamed, by one builder per key at a time (``.<key>.lock``, an flock; the others wait and read its
entry). An entry that cannot be read as its ``meta.json`` describes is *damaged*: reported, moved
aside (renamed, then deleted) and rebuilt. Folders and files get the user's umask, not
``mkdtemp``'s 0700, so a team can share one cache (:func:`distill.io.publish`).
"""

from distill.engine.cache.build import build_entry, lookup, spot_check
from distill.engine.cache.entry import CachedTeacher, CacheEntry, DamagedEntry, discard, entry_dir, open_entry
from distill.engine.cache.keys import (
    FORMAT_VERSION,
    CacheKey,
    augment_code,
    file_digest,
    images_digest,
    key_drift,
    make_view,
    tensor_digest,
    view_rows,
    view_seed,
)
from distill.engine.cache.listing import cache_dir_problem, clear_unfinished, list_entries, list_unfinished

__all__ = [
    "FORMAT_VERSION",
    "CacheEntry",
    "CacheKey",
    "CachedTeacher",
    "DamagedEntry",
    "augment_code",
    "build_entry",
    "cache_dir_problem",
    "clear_unfinished",
    "discard",
    "entry_dir",
    "file_digest",
    "images_digest",
    "key_drift",
    "list_entries",
    "list_unfinished",
    "lookup",
    "make_view",
    "open_entry",
    "spot_check",
    "tensor_digest",
    "view_rows",
    "view_seed",
]
