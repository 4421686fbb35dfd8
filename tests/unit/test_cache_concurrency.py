"""Several processes building the same cache entry at once: one builds, the others wait and read it."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest

WORKERS = 4


def _build_in_a_process(root: str, barrier, results) -> None:
    """One builder: the same teacher, images and key in every process, started together behind the barrier."""
    import torch

    from distill.engine.cache import CacheKey, build_entry

    torch.set_num_threads(1)
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    calls = []  # each batch takes a while, so the builders overlap on 2 cores as they would on a cluster
    teacher.register_forward_hook(lambda *_: calls.append(time.sleep(0.02)))
    x = torch.randint(0, 256, (400, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    key = CacheKey("t" * 64, "i" * 64, {"name": "digits"}, "shift", views=3, seed=0)
    barrier.wait()
    try:
        entry = build_entry(root, key, teacher, [], x, device=torch.device("cpu"), batch_size=64)
        digest = hashlib.sha256(np.ascontiguousarray(entry.logits).tobytes()).hexdigest()
        results.put(("ok", (entry.built, len(calls)), digest, entry.path.name))
    except BaseException as e:  # reported to the test, which shows it
        results.put(("error", repr(e), None, None))


@pytest.mark.slow  # end to end across processes or runs: CI's second step
def test_concurrent_builders_of_one_key_all_succeed_and_share_one_entry(tmp_path: Path):
    ctx = mp.get_context("spawn")  # fresh interpreters, as separate runs are
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_build_in_a_process, args=(str(tmp_path), barrier, results)) for _ in range(WORKERS)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [o[0] for o in outcomes] == ["ok"] * WORKERS, outcomes
    assert sum(o[1][0] for o in outcomes) == 1, "exactly one process built the entry; the others read it"
    ran = sorted(o[1][1] for o in outcomes)
    assert ran == [0] * (WORKERS - 1) + [3 * 7], "only the builder ran its teacher (3 views x 7 batches)"
    assert len({o[2] for o in outcomes}) == 1, "every process reads the same logits"
    assert [p.name for p in tmp_path.iterdir()] == [outcomes[0][3]], "one entry, no temporary folder or lock left"
    assert all(p.exitcode == 0 for p in procs)
