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


def remembered(scope: Hashable | None, key: tuple, compute: Callable[[], T]) -> T:
    """``compute()``, or the value remembered under ``key`` in ``scope`` (``key[0]`` names the kind)."""
    global _scope
    if scope is None:
        return compute()
    if scope != _scope:
        _values.clear()
        _hits.clear()
        _scope = scope
    if key in _values:
        _hits[str(key[0])] = _hits.get(str(key[0]), 0) + 1
        return _values[key]
    value = compute()
    _values[key] = value
    return value


def hits() -> dict[str, int]:
    """How many times each kind of value was reused in the current scope."""
    return dict(_hits)
