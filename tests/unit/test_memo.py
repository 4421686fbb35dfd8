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


def test_keep_one_holds_one_value_of_its_kind_and_forget_drops_them():
    made = []

    def load(name):
        made.append(name)
        return name

    assert memo.remembered("sweep-3", ("teacher_model", "a"), lambda: load("a"), keep_one=True) == "a"
    assert memo.remembered("sweep-3", ("teacher_model", "a"), lambda: load("a"), keep_one=True) == "a"
    assert memo.remembered("sweep-3", ("teacher_model", "b"), lambda: load("b"), keep_one=True) == "b"
    assert memo.remembered("sweep-3", ("teacher_model", "a"), lambda: load("a"), keep_one=True) == "a"
    assert made == ["a", "b", "a"], "b replaced a, so a was loaded again"
    assert memo.remembered("sweep-3", ("data", "x"), lambda: load("x")) == "x"
    memo.forget("sweep-3", "teacher_model")
    memo.remembered("sweep-3", ("teacher_model", "a"), lambda: load("a"), keep_one=True)
    memo.remembered("sweep-3", ("data", "x"), lambda: load("x"))
    assert made == ["a", "b", "a", "x", "a"], "forget drops its kind only"


def test_known_is_what_note_recorded_in_this_sweep_only():
    key = ("cache_checked", "/cache/entry")
    assert not memo.known("sweep-4", key)
    memo.note("sweep-4", key)
    assert memo.known("sweep-4", key) and memo.hits() == {"cache_checked": 1}
    memo.note(None, key)
    assert not memo.known(None, key), "outside a sweep nothing is recorded"
    assert not memo.known("sweep-5", key), "a new sweep checks again"
