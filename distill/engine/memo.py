"""What the members of one sweep share instead of paying again: Hydra's basic launcher runs every
member in one process, one after the other, and they differ in a few settings only.

A value is remembered under a key that names everything it depends on, in a scope (the sweep's
folder); a new scope forgets the old one, so a notebook or a later sweep never reads a stale value.
Outside a sweep (scope None) nothing is remembered: every call computes.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_scope: Hashable | None = None
_values: dict[Hashable, Any] = {}
_hits: dict[str, int] = {}


def _enter(scope: Hashable) -> None:
    global _scope
    if scope != _scope:
        _values.clear()
        _hits.clear()
        _scope = scope


def remembered(scope: Hashable | None, key: tuple, compute: Callable[[], T], keep_one: bool = False) -> T:
    """``compute()``, or the value remembered under ``key`` in ``scope`` (``key[0]`` names the kind).
    ``keep_one``: a new value of this kind replaces the others (a loaded model: a sweep over teachers
    holds one at a time, not all of them)."""
    if scope is None:
        return compute()
    _enter(scope)
    if key in _values:
        _hits[str(key[0])] = _hits.get(str(key[0]), 0) + 1
        return _values[key]
    if keep_one:
        for old in [k for k in _values if k[0] == key[0]]:
            del _values[old]
    value = compute()
    _values[key] = value
    return value


def forget(scope: Hashable | None, kind: str) -> None:
    """Drops the values of ``kind`` remembered in ``scope`` (one no longer worth its memory)."""
    if scope is not None and scope == _scope:
        for key in [k for k in _values if k[0] == kind]:
            del _values[key]


def known(scope: Hashable | None, key: tuple) -> bool:
    """Whether :func:`note` recorded ``key`` in ``scope`` (counted as a hit of its kind); never outside a sweep."""
    if scope is None:
        return False
    _enter(scope)
    if key in _values:
        _hits[str(key[0])] = _hits.get(str(key[0]), 0) + 1
        return True
    return False


def note(scope: Hashable | None, key: tuple) -> None:
    """Records that what ``key`` names was done in ``scope`` (e.g. a cache entry checked against its teacher)."""
    if scope is not None:
        _enter(scope)
        _values[key] = True


def hits() -> dict[str, int]:
    """How many times each kind of value was reused in the current scope."""
    return dict(_hits)
