"""Which part may use which (../shared/STYLE.md), checked on every import in the package.

Layers, bottom to top: the package root (``errors``, ``io``, the version, the config folder, the
stage table, the values of the choice keys); the parts that know nothing of each other (``data``,
``losses``, ``models``);
``export``; ``engine`` (runs models on data with losses); ``compress``; ``config`` (reads the Hydra
config for a stage); ``teachers`` (from a run's config to the teacher outputs its student reads); the
``stages``; the ``cli`` and the Python ``api``. A module imports its own
folder or layers below it, never above or beside; ``losses`` sees tensors only (no model or dataset
code); ``data`` knows nothing of models, ``models`` nothing of distillation.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import distill

ROOT = Path(distill.__file__).parent
LAYER = {
    "distill": 0, "errors": 0, "io": 0, "stage_names": 0, "choices": 0, "__main__": 9,
    "data": 1, "losses": 1, "models": 1,
    "export": 2, "engine": 3, "compress": 4, "config": 5, "teachers": 6, "stages": 7, "cli": 8, "api": 8,
}  # fmt: skip
# The one import that runs upward on purpose: ``distill.load`` (the root) forwards to ``distill.api.load``,
# inside the function, so that the package's public entry point is one attribute away.
UPWARD_ON_PURPOSE = {("distill", "distill.api")}
SIBLINGS_APART = {"data": {"models", "losses"}, "losses": {"models", "data"}, "models": {"losses", "data"}}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "distill"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    name = ".".join(rel.parts)
    return name.removesuffix(".__init__")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every ``distill`` module a file imports (at module level or inside functions), with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("distill")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distill"):
            found.append((node.lineno, node.module))
            if node.module == "distill":  # from distill import io, api, ...
                found += [(node.lineno, f"distill.{a.name}") for a in node.names if a.name in LAYER]
    return found


FILES = sorted(ROOT.rglob("*.py"))


def test_every_module_imports():
    for path in FILES:
        if path.name != "__main__.py":  # runs the command line when imported
            importlib.import_module(_module_name(path))


def test_every_part_has_a_layer():
    assert {_part(_module_name(p)) for p in FILES} <= set(LAYER)


def _violations(path: Path, me: str) -> list[str]:
    wrong = []
    for line, target in _imports(path):
        them = _part(target)
        if them == me or LAYER[them] == LAYER[me] == 0 or (me, target) in UPWARD_ON_PURPOSE:
            continue
        if LAYER[them] >= LAYER[me]:
            where = "above" if LAYER[them] > LAYER[me] else "beside"
            wrong.append(f"{path.name}:{line} ({me}) imports {target} ({them}), a layer {where} it")
        elif them in SIBLINGS_APART.get(me, ()):
            wrong.append(f"{path.name}:{line}: {me} must not know {them}")
    return wrong


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_runs_upward_or_across(path: Path):
    wrong = _violations(path, _part(_module_name(path)))
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_upward_and_sideways_imports(tmp_path):
    """Its silence above means something: the same check on files that break each rule."""
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom distill.stages import train\n\ndef f():\n    from distill import cli\n")
    assert len(_violations(bad, "engine")) == 2
    bad.write_text("from distill.models.registry import build_model\n")
    assert _violations(bad, "losses") == [
        f"{bad.name}:1 (losses) imports distill.models.registry (models), a layer beside it"
    ]
    bad.write_text("from distill.cli import STAGES\n")
    assert len(_violations(bad, "api")) == 1
    bad.write_text("from distill.io import publish\nfrom distill.errors import UserError\n")
    assert _violations(bad, "models") == [] and _violations(bad, "io") == []


PARTS = ("data", "losses", "models", "export", "engine", "compress")


@pytest.mark.parametrize(
    "path", [p for p in FILES if _part(_module_name(p)) in PARTS], ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_parts_take_typed_arguments_not_the_hydra_config(path: Path):
    """The parts never import Hydra or OmegaConf: the stages read the config once and pass typed values."""
    tree = ast.parse(path.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    wrong = [n for n in names if n.split(".")[0] in ("hydra", "omegaconf")]
    assert not wrong, f"{path.name} imports {wrong}"


def test_every_package_ships_in_the_wheel():
    """A new folder of modules must be listed in pyproject's packages, or a non-editable install lacks it."""
    import tomllib

    listed = set(tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(p) for p in ROOT.rglob("__init__.py")}
    assert found <= listed, f"missing from pyproject.toml's packages: {sorted(found - listed)}"
