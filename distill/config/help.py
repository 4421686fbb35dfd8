"""``distill <stage> --help`` and ``distill models``: what a stage takes, read from the shipped configs.

A stage's help lists its config groups (with their options), every key of its composed config with
the default and the meaning its YAML comment gives (:mod:`.comments`), and examples from the top of
its primary config. Hydra's own help (``--hydra-help``) is unchanged.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

from distill.config.comments import file_comments, header, key_comments, package

# What each config group chooses (a group's files say what each option is; this says what the group is).
GROUPS = {
    "paths": "where runs, datasets and the cache are written",
    "teacher": "the network distilled from (teacher.checkpoint=RUN_DIR reuses a trained one)",
    "student": "the network trained",
    "dataset": "the images and their train/val/test splits",
    "distill": "the distillation method",
    "optim": "the optimizer",
    "sched": "the learning-rate schedule",
    "trainer": "how to train: epochs, batch size, device, precision, threads",
    "logger": "trackers besides metrics.jsonl (several at once: logger=[csv,tensorboard])",
    "cache": "the teacher output cache",
    "compress": "the compression methods put beside distillation",
    "experiment": "a named recipe: sets several groups and keys at once",
    "hydra/launcher": "how the runs of a sweep (-m) start: basic (one after another), parallel, slurm",
    "hydra/sweeper": "how a sweep (-m) picks values: basic (every combination), kd_search (Optuna)",
}
_HYDRA_GROUPS = ("hydra/launcher", "hydra/sweeper")

# Keys the configs register from code (conf/models.yaml's entries, distill/stages/__init__.py), whose
# meaning no YAML comment states.
_MEANINGS = {
    "stage": "the stage this config is for (set by the stage)",
    "seed": "the random seed",
    "teacher.name": "the registry name: one of `distill models`",
    "student.name": "the registry name: one of `distill models`",
    "teacher.kwargs": "arguments of the model's constructor",
    "student.kwargs": "arguments of the model's constructor",
    "teacher.weights": "torchvision weights by name (e.g. IMAGENET1K_V1), fine-tuned on the dataset",
    "student.weights": "torchvision weights by name (e.g. IMAGENET1K_V1), fine-tuned on the dataset",
    "teacher.checkpoint": "a teacher run folder or a .safetensors file distill wrote (null: the newest matching run)",
    "teacher._target_": "your own network instead: the dotted path of a callable (mypkg.models.make_net)",
    "student._target_": "your own network instead: the dotted path of a callable (mypkg.models.make_net)",
}
_MODEL_GROUPS = ("teacher", "student")
_SHOWN_OPTIONS = 14  # a group with more shows how many and a few


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))


def _value_text(node: Any) -> str:
    """A config value as it is written on the command line (interpolations unresolved)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        if node._is_missing():
            return "???"
        if node._is_none():
            return "null"
        import yaml

        return yaml.safe_dump(OmegaConf.to_container(node, resolve=False), default_flow_style=True).strip()
    value = node._value()
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if str(value) != "" else "''"


def _leaves(cfg: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, default)`` of every value of ``cfg``, in its order (Hydra's own settings and
    ``_partial_`` left out)."""
    from omegaconf import DictConfig

    found = []
    for key in cfg.keys():
        node = cfg._get_node(key)
        full = f"{prefix}{key}"
        if full == "hydra" or key == "_partial_":
            continue
        if isinstance(node, DictConfig) and len(node) and not node._is_none() and not node._is_missing():
            found.extend(_leaves(node, full + "."))
        else:
            found.append((full, _value_text(node)))
    return found


def _option_file(conf: Path, group: str, option: str) -> Path | None:
    path = conf / group / f"{option}.yaml"
    return path if path.is_file() else None


def _nested(conf: Path, text: str) -> list[Path]:
    """The config files a file's defaults list merges into its own package (``/kd_term@_here_``)."""
    import yaml

    try:
        entries = (yaml.safe_load(text) or {}).get("defaults") or []
    except (yaml.YAMLError, AttributeError):
        return []
    found = []
    for entry in entries:
        if isinstance(entry, str) and entry.endswith("@_here_"):
            path = conf / f"{entry.removesuffix('@_here_').lstrip('/')}.yaml"
            if path.is_file():
                found.append(path)
    return found


def meanings(stage: str, choices: dict[str, Any]) -> dict[str, str]:
    """``{dotted key: meaning}`` from the comments of the files a stage's config was composed from:
    its primary config first, then each chosen group option, then what those merge in."""
    from distill import config_dir

    conf = Path(config_dir())
    found = dict(file_comments(conf / f"{stage}.yaml"))
    models = (conf / "models.yaml").read_text()
    for group, options in choices.items():
        if group.startswith("hydra") or options is None:
            continue
        for option in options if isinstance(options, list) else [options]:
            path = _option_file(conf, group, str(option))
            if path is None and group in _MODEL_GROUPS:  # a model registered from conf/models.yaml
                inside = key_comments(models)
                found = {
                    **{f"{group}{k[len(option) :]}": v for k, v in inside.items() if k.startswith(f"{option}.")},
                    **found,
                }
                continue
            if path is None:
                continue
            text = path.read_text()
            where = package(text) or group.replace("/", ".")
            where = "" if where == "_global_" else where + "."
            for source in [path, *_nested(conf, text)]:
                found = {**file_comments(source, where), **found}
    return found


def _group_lines(cfg: Any, choices: dict[str, Any], width: int) -> list[str]:
    """A line or two per config group of the stage, in the order of the config's keys."""
    import yaml
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    from distill import config_dir
    from distill.models.names import torchvision_names

    sources = GlobalHydra.instance().config_loader().get_sources()
    shipped = set(yaml.safe_load((Path(config_dir()) / "models.yaml").read_text()) or {})
    torchvision = set(torchvision_names()) - shipped
    order = [str(k) for k in cfg.keys()]
    groups = [g for g in choices if not g.startswith("hydra") or g in _HYDRA_GROUPS]
    groups.sort(key=lambda g: (g.startswith("hydra"), order.index(g) if g in order else len(order), g))
    lines = []
    for group in groups:
        chosen = choices[group]
        # each source listed once (the loader's get_group_options copies the whole ConfigStore per call)
        options = sorted({o for src in sources if src.is_group(group) for o in src.list(group, ObjectType.CONFIG)})
        if group in _MODEL_GROUPS:
            mine = [o for o in options if o not in torchvision]
            listed = f"{len(mine)} shipped and {len(options) - len(mine)} torchvision models: `distill models`"
        elif len(options) > _SHOWN_OPTIONS:
            some = sorted(options, key=len)[:3]
            listed = f"{len(options)} options, e.g. {', '.join(some)}; TAB completes them"
        else:
            listed = f"options: {', '.join(options)}"
        if isinstance(chosen, list):
            chosen_text = ",".join(map(str, chosen))
        else:  # an unset group (experiment): no value to type
            chosen_text = "(unset)" if chosen is None else str(chosen).lower()
        text = f"{GROUPS.get(group, '')}; {listed}".lstrip("; ")
        lines += _two_columns(f"  {group}={chosen_text}", text, 28, width)
    return lines


def _two_columns(left: str, right: str, column: int, width: int) -> list[str]:
    """``left`` then ``right`` wrapped at ``column`` (on the next line when ``left`` is too long)."""
    if not right:
        return [left]
    wrapped = textwrap.wrap(right, width - column - 1) or [""]
    if len(left) >= column:
        return [left, *(" " * column + line for line in wrapped)]
    return [left.ljust(column) + wrapped[0], *(" " * column + line for line in wrapped[1:])]


def _examples(stage: str) -> list[str]:
    """The command lines at the top of the stage's primary config (indented ``#   distill ...`` lines)."""
    from distill import config_dir

    text = (Path(config_dir()) / f"{stage}.yaml").read_text()
    found = [ln[1:].strip() for ln in text.splitlines() if re.match(r"#\s{2,}distill ", ln)]
    if stage in ("train", "teacher"):
        found.append(f"distill {stage} -m seed=0,1,2      (a sweep: one run per value; distill report compares them)")
    return found


def stage_help(stage: str, overrides: list[str]) -> str:
    """The help of ``stage``, for its config as ``overrides`` compose it (the config groups registered
    from code, :mod:`distill.stages`, already in Hydra's ConfigStore).

    Raises:
        UserError: the overrides do not compose (the line ``distill <stage>`` would print).
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from distill import config_dir
    from distill.config.overrides import explain
    from distill.errors import UserError

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=stage):
        try:
            cfg = compose(config_name=stage, overrides=overrides, return_hydra_config=True)
        except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
            raise UserError(explain(stage, e, overrides)) from None
        return _render(stage, cfg, dict(cfg.hydra.runtime.choices))


def _render(stage: str, cfg: Any, choices: dict[str, Any]) -> str:
    from distill.stage_names import STAGES

    width = _width()
    lines = [f"distill {stage}: {STAGES[stage]}", ""]
    lines += [f"usage: distill {stage} [GROUP=OPTION ...] [KEY=VALUE ...] [-m] [--cfg job] [--help] [--hydra-help]", ""]
    examples = _examples(stage)
    if examples:
        lines += ["examples:", *(f"  {e}" for e in examples), ""]
    lines += ["config groups (GROUP=OPTION; shown: the default):", *_group_lines(cfg, choices, width), ""]
    known = meanings(stage, choices)
    leaves = _leaves(cfg)
    column = min(max(len(f"  {k}={v}") for k, v in leaves) + 2, 40)
    lines.append("keys (KEY=VALUE; shown: the default; ??? must be given; +KEY=VALUE adds a key):")
    top = None
    for key, value in leaves:
        # a blank line between groups of keys (the top-level keys of the stage itself stay together)
        here = key.split(".")[0] if "." in key else ""
        if top is not None and here != top:
            lines.append("")
        top = here
        meaning = known.get(key) or _MEANINGS.get(key, "")
        if not meaning and key.endswith("._target_"):
            meaning = f"what is built ({key.split('.')[0]}=OPTION picks it)"
        lines += _two_columns(f"  {key}={value}", meaning, column, width)
    lines += [
        "",
        f"`distill {stage} --cfg job` prints the config a command line composes; `distill models` lists the models;",
        "`--hydra-help` is Hydra's own help (launchers, sweepers, run folders).",
    ]
    return "\n".join(lines)


def _first_sentence(text: str, limit: int = 100) -> str:
    sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".:")
    return sentence if len(sentence) <= limit else sentence[: limit - 3].rstrip() + "..."


def models_text(pattern: str | None = None) -> str:
    """``distill models [PATTERN]``: every model ``teacher=`` and ``student=`` take, names containing
    ``PATTERN`` only when it is given."""
    import importlib.metadata

    import yaml

    from distill import config_dir
    from distill.models.names import torchvision_names

    conf = Path(config_dir())
    text = (conf / "models.yaml").read_text()
    described = key_comments(text)

    def shown(name: str) -> bool:
        return pattern is None or pattern.lower() in name.lower()

    width = _width()
    shipped = [(n, described.get(n, "")) for n in (yaml.safe_load(text) or {}) if shown(n)]
    teacher_only = [(p.stem, header(p.read_text())) for p in sorted((conf / "teacher").glob("*.yaml")) if shown(p.stem)]
    names = [n for n in torchvision_names() if shown(n)]
    lines = ["Models for teacher=NAME and student=NAME (conf/models.yaml; any torchvision classifier by name).", ""]
    if shipped:
        lines.append("shipped configs:")
        for name, about in shipped:
            lines += _two_columns(f"  {name}", _first_sentence(about), 14, width)
        lines.append("")
    if teacher_only:
        lines.append("teacher only (conf/teacher/):")
        for name, about in teacher_only:
            lines += _two_columns(f"  {name}", _first_sentence(about), 14, width)
        lines.append("")
    try:
        version = importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    lines.append(f"torchvision {version} classification models ({len(names)}):")
    lines += textwrap.wrap(" ".join(names), width - 2, initial_indent="  ", subsequent_indent="  ")
    if not (shipped or teacher_only or names):
        lines = [f"no model name contains {pattern!r}; `distill models` lists them all"]
    return "\n".join(lines)
