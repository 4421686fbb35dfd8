"""``distill <stage> [hydra overrides]``: pops the stage word and hands the rest to that stage's Hydra app.

Before Hydra starts, every job's config is composed once and validated, so a typo or an out-of-range
value is one line on stderr with exit code 2, before any folder is created or any run of a sweep
is spent. ``-m``, ``--cfg job``, ``--help`` and tab completion are Hydra's own.
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any

from distill import __version__
from distill.engine.runs import RESUME_MAY_CHANGE, RunDir, new_stamp
from distill.errors import UserError, closest
from distill.stage_names import STAGES

_POSITIONAL = {"eval": "run", "export": "run", "report": "dir", "cache": "action"}
# Flags after which Hydra's own handling should run untouched (help, config printing, completion).
_NO_PRECHECK = (
    "--help",
    "-h",
    "--hydra-help",
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--config-dir",
    "-cd",
    "--config-name",
    "-cn",
    "--config-path",
    "-cp",
    "--resolve",
    "--experimental-rerun",
)


def _usage() -> str:
    lines = [
        f"distill {__version__}: knowledge distillation from the command line",
        "",
        "usage: distill <stage> [key=value ...] [-m] [--help] [--cfg job]",
        "",
        "stages:",
    ]
    lines += [f"  {name:<8} {text}" for name, text in STAGES.items()]
    lines += ["", "`distill <stage> --help` lists every config group and option of a stage."]
    return "\n".join(lines)


def _fail(stage: str, message: str) -> None:
    print(f"distill {stage}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _flat_keys(cfg, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for k in cfg.keys():
        full = f"{prefix}{k}"
        keys.append(full)
        value = cfg._get_node(k)
        if isinstance(value, DictConfig):
            keys.extend(_flat_keys(value, full + "."))
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


def _explain(stage: str, error: Exception, overrides: list[str]) -> str:
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
        from hydra import compose

        base = compose(config_name=stage, overrides=[])
        return (
            f"unknown config key {key!r}{closest(key, _flat_keys(base))}; `distill {stage} --cfg job` shows every key"
        )
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(error).__name__)
    return first


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job a (multi)run will start."""
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    sweeper = next((o.value() for o in parsed if o.key_or_group == "hydra/sweeper"), "basic")
    if sweeper != "basic":  # e.g. Optuna: trials are drawn later; check the config without the search ranges
        return [[o.input_line for o in parsed if not o.is_sweep_override()]]
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def precheck(stage: str, args: list[str]) -> None:
    """Composes and validates every job's config; exits 2 with one line on the first problem."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from distill import config_dir
    from distill.config.checks import missing_keys

    module = importlib.import_module(f"distill.stages.{stage}")
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if not a.startswith("-")]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=stage):
        # ValueError: Hydra's own for e.g. `teacher=0` (a group given a number)
        try:
            jobs = _jobs(overrides, multirun)
        except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
            _fail(stage, _explain(stage, e, overrides))
        for job in jobs:
            in_job = f" (in job {' '.join(job)})" if multirun else ""
            try:
                cfg = compose(config_name=stage, overrides=job)
            except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
                _fail(stage, _explain(stage, e, job))
            try:
                need = missing_keys(cfg)
                if need:
                    _fail(stage, f"{', '.join(need)} must be given, e.g. {need[0]}=...")
                module.validate(cfg)
            except UserError as e:
                _fail(stage, f"{e}{in_job}")
            except OmegaConfBaseException as e:  # e.g. an interpolation ${...} that points nowhere
                first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
                _fail(stage, f"{first}{in_job}")


# What a resumed run may change: how it is shown and how many threads/workers it uses, nothing
# that alters the numbers.


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


def _is_special(key: Any) -> bool:
    return isinstance(key, str) and len(key) > 2 and key.startswith("_") and key.endswith("_")


def _has_special_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_is_special(k) or _has_special_key(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_special_key(v) for v in value)
    return False


def resume_args(stage: str, args: list[str]) -> list[str]:
    """``resume=RUN_DIR [allowed overrides]`` -> the run's own overrides, continued in its folder."""
    import yaml

    if any(a in ("-m", "--multirun") for a in args):
        _fail(stage, "resume= continues one run; it cannot be part of a sweep (-m)")
    run = next(a.split("=", 1)[1] for a in args if a.startswith("resume="))
    from pathlib import Path

    root = Path(run).expanduser()
    if not root.is_dir():
        _fail(stage, f"resume={run}: no such run folder")
    if RunDir(root).finished:
        _fail(stage, f"{run} finished already (it has summary.json): nothing to resume")
    overrides_file = root / ".hydra" / "overrides.yaml"
    config_file = RunDir(root).config
    if not overrides_file.is_file() or not config_file.is_file():
        _fail(stage, f"{run} is not a distill run folder (no config.yaml and .hydra/overrides.yaml)")
    try:
        ran = (yaml.safe_load(config_file.read_text()) or {}).get("stage")
        original = list(yaml.safe_load(overrides_file.read_text()) or [])
    except yaml.YAMLError:
        _fail(stage, f"{run}: config.yaml or .hydra/overrides.yaml is not readable YAML")
    if ran != stage:
        _fail(stage, f"{run} is a {ran} run: resume it with distill {ran} resume={run}")
    unsafe = next((o for o in original if _reaches_code(o)), None)
    if unsafe is not None:
        _fail(
            stage,
            f"{overrides_file}: the stored override {unsafe!r} names code (_target_ and the like) or Hydra's own "
            "settings; a resumed run replays plain config values only",
        )
    if not RunDir(root).state.is_file():
        _fail(stage, f"{run} has no saved state yet (checkpoints/state.pt: written after the first epoch)")
    extra = [a for a in args if not a.startswith("resume=")]
    bad = [a for a in extra if a.split("=", 1)[0].lstrip("+~") not in RESUME_MAY_CHANGE]
    if bad:
        allowed = ", ".join(RESUME_MAY_CHANGE)
        _fail(stage, f"a resumed run keeps its config; {bad[0]} would change it (only {allowed} may be given)")
    changed = {a.split("=", 1)[0] for a in extra}
    keep = [o for o in original if not o.startswith("resume=") and o.split("=", 1)[0] not in changed]
    where = str(root.resolve())
    return [*keep, *extra, f"resume={where}", f"hydra.run.dir={where}"]


def _torchrun_args(stage: str, args: list[str]) -> list[str]:
    """Under torchrun: joins the process group, gives every rank rank 0's run folder, and keeps
    ranks other than 0 from writing Hydra's files and logs (they train; rank 0 writes)."""
    from distill.engine import distributed as dist

    if not dist.launched_by_torchrun():
        return args

    dist.init()
    stamp = dist.broadcast_object(new_stamp())
    given = {a.split("=", 1)[0] for a in args}
    extra = []
    if "hydra.run.dir" not in given:
        extra.append(f"hydra.run.dir=${{paths.root}}/{stage}/{stamp}")
    if "hydra.sweep.dir" not in given:
        extra.append(f"hydra.sweep.dir=${{paths.root}}/multirun/{stamp}")
    if dist.rank() != 0:
        extra += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    return [*args, *extra]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    if argv[0] == "--version":
        print(__version__)
        return
    stage, args = argv[0], argv[1:]
    if stage not in STAGES:
        _fail(stage, f"unknown stage {stage!r}{closest(stage, STAGES)}; stages: {', '.join(STAGES)}")
    if stage in _POSITIONAL and args and not args[0].startswith("-") and "=" not in args[0]:
        args[0] = f"{_POSITIONAL[stage]}={args[0]}"
    if stage == "cache":  # a key prefix such as 788e91 or 0123 is text, not the number Hydra would read
        args = [f"entry='{a[6:]}'" if a.startswith("entry=") and a[6:7] not in ("'", '"') else a for a in args]
    # Hydra's parser wants -m before the overrides; users write it anywhere.
    args = [a for a in args if a in ("-m", "--multirun")] + [a for a in args if a not in ("-m", "--multirun")]
    if stage in ("train", "teacher") and any(a.startswith("resume=") for a in args):
        args = resume_args(stage, args)
    if not any(a.split("=")[0] in _NO_PRECHECK for a in args):
        precheck(stage, args)
    if stage in ("train", "teacher"):
        args = _torchrun_args(stage, args)
    module = importlib.import_module(f"distill.stages.{stage}")
    sys.argv = [f"distill {stage}", *args]
    module.main()


if __name__ == "__main__":
    main()
