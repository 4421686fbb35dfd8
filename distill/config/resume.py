"""``resume=RUN_DIR``: a run continued from its folder, replaying its own overrides (plain values only,
never code) with nothing changed but what may change (``RESUME_MAY_CHANGE``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.engine.runs import RESUME_MAY_CHANGE, RunDir
from distill.errors import UserError


def _reaches_code(override: Any) -> bool:
    """Whether an override read from a run folder could choose code: a Hydra key such as ``_target_``
    (at any depth, in the key or inside a dict value), an interpolation (``${oc.decode:...}`` makes a
    ``_target_`` node when resolved), anything under ``hydra`` (callbacks, launchers, environment),
    or text that is not an override at all."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not isinstance(override, str) or "${" in override:
        return True  # an interpolation is resolved later: ${oc.decode:...} or ${oc.create:...} can build a _target_
    try:
        parsed = OverridesParser.create().parse_override(override)
        value = parsed.value()
    except Exception:  # noqa: BLE001 - anything Hydra cannot parse is not replayed
        return True
    parts = parsed.key_or_group.lstrip("+~").replace("/", ".").split(".")
    if parts[0] == "hydra" or any(_is_special(p) for p in parts):
        return True
    return _has_special_key(value)


def _granted(args: list[str]) -> tuple[set[str], bool]:
    """The targets the resume command names with ``trust_code=`` (a path or a list), and whether it
    trusts every one (``trust_code=true``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for arg in args:
        if arg.split("=", 1)[0].lstrip("+~") != "trust_code":
            continue
        value = OverridesParser.create().parse_override(arg).value()
        if value is True:
            return set(), True
        return ({value} if isinstance(value, str) else {str(v) for v in value or []}), False
    return set(), False


def _named_again(override: Any, granted: tuple[set[str], bool]) -> bool:
    """Whether a stored ``student._target_=V`` / ``teacher._target_=V`` is one the resume command trusts."""
    from distill.models.user import is_target

    if not isinstance(override, str) or "${" in override or "=" not in override:
        return False
    key, value = override.split("=", 1)
    if key.lstrip("+~") not in ("student._target_", "teacher._target_") or not is_target(value):
        return False
    names, everything = granted
    return everything or value in names


def _is_special(key: Any) -> bool:
    return isinstance(key, str) and len(key) > 2 and key.startswith("_") and key.endswith("_")


def _has_special_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_is_special(k) or _has_special_key(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_special_key(v) for v in value)
    return False


# Keys whose default changed after runs were started with the earlier one: a resumed run keeps the value
# it started with; a stored config without the key ran with the value given here (a run from before
# trainer.grad_clip existed trained without a limit, at lr 0.01, and kept its best-val-acc epoch).
DEFAULTS_CHANGED = {"optim.lr": "null", "trainer.grad_clip": "null", "trainer.epochs": "null", "trainer.select": "best"}


def resume_args(stage: str, args: list[str]) -> list[str]:
    """``resume=RUN_DIR [allowed overrides]`` -> the run's own overrides, continued in its folder."""
    import yaml

    if any(a in ("-m", "--multirun") for a in args):
        raise UserError("resume= continues one run; it cannot be part of a sweep (-m)")
    run = next(a.split("=", 1)[1] for a in args if a.startswith("resume="))
    root = Path(run).expanduser()
    if not root.is_dir():
        raise UserError(f"resume={run}: no such run folder")
    if RunDir(root).finished:
        raise UserError(f"{run} finished already (it has summary.json): nothing to resume")
    overrides_file = root / ".hydra" / "overrides.yaml"
    config_file = RunDir(root).config
    if not overrides_file.is_file() or not config_file.is_file():
        raise UserError(f"{run} is not a distill run folder (no config.yaml and .hydra/overrides.yaml)")
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
        ran = config.get("stage") if isinstance(config, dict) else None
        original = list(yaml.safe_load(overrides_file.read_text()) or [])
    except yaml.YAMLError:
        raise UserError(f"{run}: config.yaml or .hydra/overrides.yaml is not readable YAML") from None
    if ran != stage:
        raise UserError(f"{run} is a {ran} run: resume it with distill {ran} resume={run}")
    extra = [a for a in args if not a.startswith("resume=")]
    # a stored trust_code is not replayed: the folder cannot grant itself trust; the user grants it again
    original = [o for o in original if not (isinstance(o, str) and o.split("=", 1)[0].lstrip("+~") == "trust_code")]
    granted = _granted(extra)
    unsafe = next((o for o in original if _reaches_code(o) and not _named_again(o, granted)), None)
    if unsafe is not None:
        hint = ""
        if isinstance(unsafe, str) and unsafe.split("=", 1)[0].endswith("._target_"):
            hint = f" (a model of your own code: add trust_code={unsafe.split('=', 1)[1]} to name it again)"
        raise UserError(
            f"{overrides_file}: the stored override {unsafe!r} names code (_target_ and the like) or Hydra's own "
            f"settings; a resumed run replays plain config values only{hint}",
        )
    if not RunDir(root).state.is_file():
        raise UserError(f"{run} has no saved state yet (checkpoints/state.pt: written after the first epoch)")
    bad = [a for a in extra if a.split("=", 1)[0].lstrip("+~") not in RESUME_MAY_CHANGE]
    if bad:
        allowed = ", ".join(RESUME_MAY_CHANGE)
        raise UserError(f"a resumed run keeps its config; {bad[0]} would change it (only {allowed} may be given)")
    changed = {a.split("=", 1)[0] for a in extra}
    keep = [o for o in original if not o.startswith("resume=") and o.split("=", 1)[0] not in changed]
    given = {o.split("=", 1)[0].lstrip("+~") for o in [*keep, *extra]}
    keep += [f"{key}={_value(config, key, absent)}" for key, absent in DEFAULTS_CHANGED.items() if key not in given]
    where = str(root.resolve())
    return [*keep, *extra, f"resume={where}", f"hydra.run.dir={where}"]


def _value(config: dict, key: str, absent: str = "null") -> str:
    """``key``'s value in a stored (resolved) config as an override's value; ``absent`` where it has none."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return absent
        node = node[part]
    if node is None:
        return "null"
    if isinstance(node, (bool, int, float)):
        return str(node).lower() if isinstance(node, bool) else repr(node)
    return str(node)
