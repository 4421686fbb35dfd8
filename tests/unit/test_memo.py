"""What a sweep's members share (distill.engine.memo): reused within the sweep, never outside it."""

from __future__ import annotations

from distill.engine import memo


def test_a_value_is_computed_once_per_scope_and_never_outside_one():
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    assert memo.remembered(None, ("data", "a"), compute) == 1
    assert memo.remembered(None, ("data", "a"), compute) == 2, "outside a sweep nothing is remembered"
    assert memo.remembered("sweep-1", ("data", "a"), compute) == 3
    assert memo.remembered("sweep-1", ("data", "a"), compute) == 3  # reused
    assert memo.remembered("sweep-1", ("data", "b"), compute) == 4  # another key
    assert memo.hits() == {"data": 1}
    assert memo.remembered("sweep-2", ("data", "a"), compute) == 5, "a new sweep forgets the old one"
    assert memo.hits() == {}
