"""torchvision's classification model names without importing torchvision.

Importing torchvision takes seconds (it loads ``torch._dynamo``), and every command needs the names:
they are the options of the ``teacher`` and ``student`` config groups. They are read from the
installed library once and kept in the user's cache folder (``$XDG_CACHE_HOME/distill``, else
``~/.cache/distill``) under a key made of torchvision's version, where it is installed and when its
``models`` folder last changed: another torchvision (upgraded, reinstalled, another environment)
has another key, so its names are read again, never taken from a stale list. Each key has a file
of its own, so environments that share a home do not overwrite each other's list.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from pathlib import Path


def _library_key() -> str | None:
    """What identifies the installed torchvision, found without importing it (None: not installed)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    try:
        version = importlib.metadata.version("torchvision")
        changed = models.stat().st_mtime_ns
    except (importlib.metadata.PackageNotFoundError, OSError):
        return None
    return f"{version} {models} {changed}"


def cache_file(key: str) -> Path:
    """The file that keeps the names of the torchvision that ``key`` identifies."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(root) / "distill" / f"torchvision_models-{digest}.json"


def _read_library() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_names() -> list[str]:
    """Every torchvision classification model name, sorted: from the cache when it was written for the
    installed torchvision, else read from the library (and the cache written, where it can be)."""
    from distill.errors import UserError
    from distill.io import atomic_write

    key = _library_key()
    path = cache_file(key) if key is not None else None
    if path is not None:
        try:
            kept = json.loads(path.read_text())
            if kept.get("key") == key and isinstance(kept.get("names"), list):
                return kept["names"]
        except (OSError, ValueError, AttributeError):
            pass
    names = _read_library()
    if path is not None:
        try:
            atomic_write(path, json.dumps({"key": key, "names": names}, indent=0))
        except (OSError, UserError):  # a read-only home or a full disk: the names are read each time
            pass
    return names
