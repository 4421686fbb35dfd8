"""What went wrong in a command line's overrides, in one line a user can act on: the unknown key or
option with its closest match, and the quoting a shell ate."""

from __future__ import annotations

import re
from typing import Any

from distill.errors import closest, first_line


def flat_keys(cfg, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for k in cfg.keys():
        full = f"{prefix}{k}"
        keys.append(full)
        value = cfg._get_node(k)
        if isinstance(value, DictConfig):
            keys.extend(flat_keys(value, full + "."))
    return keys


def _quoted(value: str) -> str | None:
    """``value`` in the quotes of Hydra's override grammar, checked by parsing it back; None if no form reads back."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    # Hydra reads a backslash before a quote, or before the closing quote, as an escape: double those.
    escaped = re.sub(r"(\\+)$", r"\1\1", value)
    candidates = [f'"{escaped}"', f"'{escaped}'", '"' + re.sub(r'(\\*)"', r'\1\1\\"', escaped) + '"']
    for form in candidates:
        try:
            if parser.parse_override(f"k={form}").value() == value:
                return form
        except Exception:  # noqa: BLE001 - a form Hydra cannot read is simply not suggested
            continue
    return None


# Characters Hydra's override grammar takes in an unquoted value besides ASCII letters and digits.
_UNQUOTED = set("/-\\+.$%*@?|:_ ")


def _quoting_hint(error: Exception, overrides: list[str]) -> str | None:
    """One line for an override whose value Hydra reads only in quotes: a value with non-ASCII
    letters, parentheses, '#', '!', ... (a parse error), or with commas (an ambiguous sweep). It
    shows the quoting that works for the shell and Hydra both, checked by parsing it back."""
    import shlex

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    parser = OverridesParser.create()
    ambiguous = re.match(r"Ambiguous value for argument '(.*)'$", str(error).splitlines()[0] if str(error) else "")
    if ambiguous:
        override, reason = ambiguous.group(1), ""
    elif isinstance(error, OverrideParseException):
        for override in overrides:
            try:
                parser.parse_override(override)
            except HydraException as e:
                reason = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
                break
        else:
            return None
    else:
        return None
    key, eq, value = override.partition("=")
    form = _quoted(value) if eq else None
    if form is None:
        return f"{override}: Hydra cannot read this override ({reason or 'not key=value'})"
    try:  # the key must read too: quoting the value does not help `dataset.röot=x`
        parser.parse_override(f"{key}={form}")
    except HydraException:
        return f"{override}: Hydra cannot read the key {key.strip()!r}; keys are ASCII names such as dataset.root"
    suggestion = shlex.quote(f"{key}={form}")
    if ambiguous:
        return (
            f"{override}: Hydra reads the commas as values to sweep over (with -m); for one value, quote it for "
            f"Hydra inside the shell's quotes: {suggestion}"
        )
    bad = next((c for c in value.strip() if not (c.isascii() and c.isalnum()) and c not in _UNQUOTED), None)
    what = f" ({bad!r} must be quoted)" if bad else ""
    return f"{override}: quote the value for Hydra inside the shell's quotes: {suggestion}{what}"


def explain(stage: str, error: Exception, overrides: list[str]) -> str:
    """One line for a Hydra composition error."""
    from hydra.errors import HydraException

    text = str(error)
    if isinstance(error, HydraException):
        hint = _quoting_hint(error, overrides)
        if hint:
            return hint
    plugin = re.search(r"Could not (?:find|load) '(hydra/(?:launcher|sweeper)/(joblib|submitit_\w+|optuna))'", text)
    if plugin:
        return f"{plugin.group(1)} comes with Hydra's {plugin.group(2)} plugin: pip install 'distill[sweeps]'"
    missing = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if isinstance(error, (TypeError, ValueError)):  # e.g. teacher=0 or teacher=[1,2]: a group given numbers
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().config_loader()
        name_list = r"\[?\s*([A-Za-z_][\w./-]*(\s*,\s*[A-Za-z_][\w./-]*)*)?\s*\]?"
        for o in overrides:
            group, _, name = o.partition("=")
            if not re.fullmatch(name_list, name.strip()) and loader.get_group_options(group.lstrip("+~")):
                return f"{group}={name}: {group} takes a config name from conf/{group}/ (e.g. {group}=mlp)"
    if missing:
        from hydra import compose, initialize_config_dir  # noqa: F401  (options come from the loader below)
        from hydra.core.global_hydra import GlobalHydra

        group, name = missing.groups()
        options = GlobalHydra.instance().config_loader().get_group_options(group)
        sample = ", ".join(o for o in options if not o[0].isdigit())
        if len(options) > 20:
            sample = ", ".join(sorted(o for o in options if "_" not in o or o.startswith(("resnet", "mobilenet")))[:20])
            sample += f", ... ({len(options)} in all)"
        return f"unknown {group} {name!r}{closest(name, options)}; choose one of: {sample}"
    bad_key = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text)
    if bad_key:
        key = bad_key.group(1)
        return f"unknown config key {key!r}{closest(key, _keys(stage))}; `distill {stage} --help` lists every key"
    return first_line(error)


_SHIPPED: dict[tuple, Any] = {}


def _shipped(stage: str) -> Any:
    """``stage``'s config as shipped, composed once per stage and config search path."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    sources = GlobalHydra.instance().config_loader().get_sources()
    where = (stage, *((source.provider, source.path) for source in sources))
    if where not in _SHIPPED:
        _SHIPPED[where] = compose(config_name=stage, overrides=[])
    return _SHIPPED[where]


def _follows(stage: str, key: str) -> bool:
    """Whether ``key``'s shipped value is an interpolation (``${trainer.epochs}``)."""
    from omegaconf import OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(_shipped(stage), parent) if parent else _shipped(stage)
    return OmegaConf.is_config(node) and leaf in node and OmegaConf.is_interpolation(node, leaf)


def _keys(stage: str) -> list[str]:
    """Every key of ``stage``'s config as shipped."""
    return flat_keys(_shipped(stage))


_KINDS = {"Integer": "a whole number", "Float": "a number", "Boolean": "true or false"}


def type_problem(error: BaseException) -> tuple[str, str] | None:
    """``(key, "KEY must be a whole number, got 'x'")`` when composing failed on a value of the wrong
    type for a typed schema (:mod:`distill.config.schema`), else None."""
    from omegaconf.errors import ValidationError

    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, ValidationError):
        cause = cause.__cause__
    key = getattr(cause, "full_key", None)
    text = str(cause) if key else ""
    if found := re.search(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", text):
        return key, f"{key} must be {_KINDS.get(found[2], found[2].lower())}, got {found[1]!r}"
    if found := re.search(r"Value '(.*)' is not a valid bool", text):
        return key, f"{key} must be true or false, got {found[1]!r}"
    return None


def compose_collecting(compose: Any, overrides: list[str]) -> tuple[Any, list[str]]:
    """``compose(overrides)``, reporting every override of the wrong type instead of only the first:
    each one found is set aside with its problem and the rest composed again. Returns the config and
    the problems, for the caller to report together with the checks' own."""
    problems, overrides = [], list(overrides)
    while True:
        try:
            return compose(overrides), problems
        except Exception as e:
            found = type_problem(e)
            kept = [o for o in overrides if found and o.lstrip("+~").split("=", 1)[0] != found[0]]
            if found is None or len(kept) == len(overrides):  # not a type, or a config file's own value
                raise
            problems.append(found[1])
            overrides = kept


def validate_all(validate: Any, cfg: Any, problems: list[str]) -> None:
    """Runs a stage's checks and raises one UserError with ``problems`` (the composition's) and theirs."""
    from distill.errors import UserError
    from distill.models.user import trusting

    try:
        with trusting(cfg):  # weights files the checks open may name the user's own code
            validate(cfg)
    except UserError as e:
        problems = [*problems, str(e)]
    if problems:
        raise UserError("; ".join(problems))


# Hydra's own command-line flags (hydra/_internal/utils.py get_args_parser), and those that take a value.
HYDRA_FLAGS = frozenset(
    "--help -h --hydra-help --version --cfg -c --resolve --package -p --run -r --multirun -m --shell-completion -sc "
    "--config-path -cp --config-name -cn --config-dir -cd --experimental-rerun --info -i".split()
)
_TAKES_VALUE = frozenset("--cfg -c --package -p --config-path -cp --config-name -cn --config-dir -cd".split())
_INFO_TOPICS = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def _dashed(args: list[str]) -> list[tuple[str, str, str | None]]:
    """``(as typed, name, value or None)`` of each ``--name value`` / ``--name=value`` that is not
    one of Hydra's flags (argparse habits: Hydra takes ``key=value``)."""
    found, i = [], 0
    while i < len(args):
        arg, following = args[i], args[i + 1] if i + 1 < len(args) else None
        flag = arg.split("=", 1)[0]
        if flag in _TAKES_VALUE or (flag in ("--info", "-i") and following in _INFO_TOPICS):
            i += 2
            continue
        i += 1
        if not arg.startswith("--") or flag in HYDRA_FLAGS or len(arg) == 2:
            continue
        name, eq, value = arg[2:].partition("=")
        if eq:
            found.append((arg, name, value))
        elif following is not None and not following.startswith("-") and "=" not in following:
            found.append((f"{arg} {following}", name, following))
            i += 1
        else:
            found.append((arg, name, None))
    return found


def argparse_habit(stage: str, args: list[str]) -> str | None:
    """One line for ``--epochs 3`` / ``--epochs=3`` (Hydra takes ``trainer.epochs=3``): the override
    to write instead, found among the stage's keys and config groups; None when there is no such
    argument. Needs Hydra initialized with the stage's configs."""
    import shlex

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType
    from omegaconf import OmegaConf

    given = _dashed(args)
    if not given:
        return None
    keys = _keys(stage)
    groups = GlobalHydra.instance().config_loader().get_group_options("", results_filter=ObjectType.GROUP)
    leaves: dict[str, list[str]] = {}
    for key in keys:
        leaves.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    meant, unknown = [], []
    for typed, name, value in given:
        name = name.replace("-", "_")
        if name in keys or name in groups:
            found = [name]
        else:
            found = leaves.get(name) or leaves.get(name.rsplit(".", 1)[-1]) or []
            # sched.epochs is ${trainer.epochs}: the key to set is the one the others follow
            found = [k for k in found if not _follows(stage, k)] or found
        if not found:
            guess = closest(name, [*keys, *groups, *leaves])
            unknown.append(f"{typed} (not a config key{guess})")
            continue
        if value is None:  # a switch such as --compile: true for a true/false key
            flag = all(isinstance(OmegaConf.select(_shipped(stage), k, default=None), bool) for k in found)
            value = "true" if flag else "..."
        meant.append(" or ".join(shlex.quote(f"{k}={value}") for k in found))
    typed_all = " ".join(t for t, _, _ in given)
    line = f"{typed_all}: distill takes KEY=VALUE overrides, not --options"
    if meant:
        line += f"; did you mean {' '.join(meant)}?"
    if unknown:
        line += f"; {', '.join(unknown)}; `distill {stage} --help` lists the keys"
    return line
