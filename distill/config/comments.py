"""The meaning of each key of a config file, as its comments state it, for ``distill <stage> --help``.

The shipped YAML files say what a key means in a comment on its line (``epochs: 30  # ...``, lines
below starting at the same column go on with it) or in the comment lines just above it. PyYAML
finds each key and where it ends; the comments are read from those lines of the text.
"""

from __future__ import annotations

import re
from pathlib import Path

_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)", re.M)


def header(text: str) -> str:
    """The comment lines a file starts with (a ``# @package`` line left out), as one line."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if not _PACKAGE.match(line):
            lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def package(text: str) -> str | None:
    """The file's ``# @package`` header, or None."""
    found = _PACKAGE.search(text)
    return found.group(1) if found else None


def _trailing(lines: list[str], line: int, column: int) -> tuple[str, int] | None:
    """The comment after ``column`` on ``line`` and the comment-only lines below it that start at the
    same column (the text going on), with that column; None without one."""
    rest = lines[line][column:]
    found = re.match(r"\s*:?\s*(#.*)$", rest)
    if not found:
        return None
    at = column + found.start(1)
    parts = [found.group(1)[1:].strip()]
    for below in lines[line + 1 :]:
        if below[:at].strip() or not below[at:].startswith("#"):
            break
        parts.append(below[at + 1 :].strip())
    return " ".join(parts), at


def _above(lines: list[str], line: int) -> str:
    """The comment lines just above ``line`` (up to a blank or other line); '' for the comment a file
    starts with (it says what the whole file is: :func:`header`)."""
    if all(above.startswith("#") for above in lines[:line]):
        return ""
    parts: list[str] = []
    for above in reversed(lines[:line]):
        if not above.strip().startswith("#"):
            break
        parts.insert(0, above.strip().lstrip("#").strip())
    return " ".join(parts)


def key_comments(text: str, prefix: str = "") -> dict[str, str]:
    """``{dotted key: its comment}`` for every key of the YAML ``text`` that has one, keys under ``prefix``.

    A trailing comment that starts with extra spaces (``#   classifier's ...``) goes on with the key
    above's, and the key gets that whole text too.
    """
    import yaml

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    lines = text.splitlines()
    found: dict[str, str] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        previous = None
        for key, value in node.value:
            full = f"{path}{key.value}"
            end = value.end_mark if value.end_mark.line == key.start_mark.line else key.end_mark
            after = _trailing(lines, end.line, end.column)
            raw = lines[end.line][after[1] :] if after else ""
            if after and previous and re.match(r"#\s{2,}", raw):
                found[previous] = found[full] = f"{found.get(previous, '')} {after[0]}".strip()
            elif after:
                found[full] = after[0]
            elif _above(lines, key.start_mark.line):
                found[full] = _above(lines, key.start_mark.line)
            previous = full
            walk(value, full + ".")

    walk(root, prefix)
    return found


def file_comments(path: Path, prefix: str = "") -> dict[str, str]:
    """:func:`key_comments` of a file ('' where it cannot be read)."""
    try:
        return key_comments(path.read_text(), prefix)
    except OSError:
        return {}
