"""User-facing errors: one line, exit code 2, no traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input (config, paths, files), reported as one line.

    Several problems found in one validation pass are joined with ``; `` so the user fixes
    them all at once.
    """


class Diverged(UserError):
    """The loss became NaN or infinite. In a sweep only that member fails (Optuna records a failed
    trial) and the sweep goes on."""


def closest(value: str, choices: Iterable[str]) -> str:
    """A ``did you mean ...?`` hint for ``value`` among ``choices`` ('' when nothing is close)."""
    matches = difflib.get_close_matches(str(value), list(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(m) for m in matches)}?)" if matches else ""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first non-empty line of an exception's message (its class name when it has none)."""
    text = next((ln.strip() for ln in str(error).splitlines() if ln.strip()), type(error).__name__)
    return text[:limit] if limit else text
