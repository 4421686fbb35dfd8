"""The ``train`` stage's checks of its config: every problem found in one pass, reported in one line
before a folder is made or a model is built. Checks of one method's own settings live with the
method (its constructor and ``Method.check``); these call them."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from distill.config.adapters import BLACK_BOX, as_list, model_name, uses_teacher
from distill.config.checks import check_distill, check_number, check_path, check_training, plain_value, raise_if
from distill.config.entry import given_overrides
from distill.engine.cache import cache_dir_problem
from distill.engine.checkpoint import checked_metadata, spec_of, weights_path
from distill.engine.taps import HEAD
from distill.errors import UserError, closest
from distill.models.logits_teacher import LogitsFileTeacher
from distill.models.onnx_teacher import OnnxTeacher
from distill.models.registry import available_models, build_model
from distill.models.spec import check_buildable

log = logging.getLogger("distill")


def _check_method(cfg: DictConfig, errors: list[str]) -> None:
    """The method's own settings: instantiated once here, so a bad value is one line before any run."""
    d = cfg.distill
    if d.get("method") is None:
        return
    try:
        method = instantiate(d.method, _convert_="all")
    except Exception as e:  # noqa: BLE001 - hydra wraps the constructor's error; show its root cause
        cause = e
        while cause.__cause__ is not None:
            cause = cause.__cause__
        errors.append(f"distill.method ({d.method._target_.rsplit('.', 1)[-1]}): {cause}")
        return
    if not getattr(method, "uses_teacher", True) and isinstance(d.alpha, (int, float)) and d.alpha > 0:
        errors.append(
            f"{type(method).__name__} distils the student into itself without a teacher: distill.alpha must be 0, "
            f"got {d.alpha}"
        )
    errors.extend(f"distill.method.{problem}" for problem in method.check(1 + len(as_list(d.get("teachers")))))


def _check_black_box_file(cfg: DictConfig, errors: list[str]) -> None:
    """Opens the ONNX or logits file once, so a wrong file is refused before a run folder exists."""
    path = str(cfg.teacher.path)
    if not Path(path).is_file():
        return
    try:
        if cfg.teacher.name == "onnx":
            OnnxTeacher(path)
        else:
            LogitsFileTeacher(path)
    except UserError as e:
        errors.append(f"teacher.path: {e}")


def _check_timm_name(node: DictConfig, role: str, errors: list[str]) -> None:
    """A timm name (with its tag, or ``hf-hub:``) timm knows, and its pretrained weights when asked for."""
    from distill.models.timm_models import node_problems

    builds = role == "student" or node.get("checkpoint") is None  # a teacher's checkpoint needs no weights
    errors.extend(node_problems(role, str(node.name), node.get("pretrained"), node.get("weights"), builds))


def _check_layer_names(cfg: DictConfig, roles: tuple[str, ...], errors: list[str]) -> None:
    """Explicit ``distill.*_layers`` names must exist in the model: checked on a model built for
    stand-in data (layer names do not depend on classes or image size), before any folder exists."""
    for role in roles:
        names = [n for n in as_list(cfg.distill.get(f"{role}_layers")) if n not in ("auto", HEAD)]
        if not names:
            continue
        node = cfg[role]
        try:
            net = build_model(
                model_name(node), 10, 3, (32, 32), (0.5,) * 3, (0.25,) * 3, kwargs=plain_value(node.get("kwargs"))
            )
        except (UserError, TypeError, ValueError):
            continue  # reported by the model-name checks
        known = [n for n, _ in net.named_modules() if n]
        for name in names:
            if name not in known:
                shown = ", ".join(known[:30]) + (" ..." if len(known) > 30 else "")
                errors.append(
                    f"distill.{role}_layers: {node.name} has no layer {name!r}{closest(name, known)}; its layers: "
                    f"{shown} (`distill inspect {role}={node.name}` lists them with their shapes)"
                )


def unused_temperature(cfg: DictConfig) -> str | None:
    """The rule of the two temperatures: ``distill.temperature`` softens the logit-KD term (the one
    ``distill.alpha`` weighs); a method with a temperature of its own (DKD, DIST, multi-teacher, BYOT,
    DML) softens with ``distill.method.temperature``, set to its paper's value in its YAML. So with
    ``alpha=0`` a ``distill.temperature`` given for the run changes nothing: said, not refused."""
    d = cfg.distill
    method = d.get("method")
    if method is None or method.get("temperature") is None or d.alpha != 0:
        return None
    if not any(o.lstrip("+").split("=", 1)[0] == "distill.temperature" for o in given_overrides()):
        return None
    name = str(method._target_).rsplit(".", 1)[-1]
    return (
        f"distill.temperature={d.temperature} changes nothing here: distill.alpha is 0 and {name} softens with "
        f"its own distill.method.temperature={method.temperature}; set (or sweep) that one instead"
    )


def validate(cfg: DictConfig) -> None:
    """Every problem of a composed ``train`` config, reported together before anything runs."""
    errors: list[str] = []
    check_distill(cfg, errors)
    if errors:
        raise_if(errors)
    if note := unused_temperature(cfg):
        log.warning(note)
    uses_teacher_ = uses_teacher(cfg)
    black_box = uses_teacher_ and cfg.teacher.name in BLACK_BOX
    check_training(cfg, errors, ("student", "teacher") if uses_teacher_ and not black_box else ("student",))
    check_path(cfg.teacher.checkpoint, "teacher.checkpoint", errors)
    if black_box:
        check_path(cfg.teacher.path, "teacher.path", errors, folder_ok=False)
        if plain_value(cfg.distill.get("teacher_layers")) and (cfg.distill.get("beta") or 0) > 0:
            errors.append(
                f"teacher={cfg.teacher.name} gives logits only, but this distill method reads the teacher's "
                f"layers (distill.teacher_layers={plain_value(cfg.distill.teacher_layers)}); use a logit "
                "method: distill=kd, dkd or dist"
            )
        if cfg.teacher.name == "logits" and cfg.trainer.get("mix", "none") != "none":
            errors.append("precomputed teacher logits cannot follow mixed images; use trainer.mix=none")
        _check_black_box_file(cfg, errors)
    _check_method(cfg, errors)
    for role in ("student", "teacher"):
        node = cfg.get(role)
        if node is not None and node.get("source") == "timm" and (role == "student" or uses_teacher_):
            _check_timm_name(node, role, errors)
    cache = cfg.get("cache")
    if cache is not None:
        if str(cache.enabled).lower() not in ("auto", "true", "false"):
            errors.append(f"cache.enabled={cache.enabled!r} must be auto, true or false")
        if cache.views is not None:
            check_number(cfg, "cache.views", errors, lo=1, integer=True)
        check_number(cfg, "cache.max_gb", errors, lo=0, lo_open=True)
        if cache.seed is not None:  # null: the run's seed
            check_number(cfg, "cache.seed", errors, lo=0, integer=True)
        if uses_teacher_ and str(cache.enabled).lower() != "false" and (problem := cache_dir_problem(str(cache.dir))):
            errors.append(problem)
    if not errors:
        _check_layer_names(cfg, ("student", "teacher") if uses_teacher_ and not black_box else ("student",), errors)
    for i, extra in enumerate(as_list(cfg.distill.get("teachers"))):
        check_path(extra, f"distill.teachers[{i}]", errors)
    online = bool(cfg.distill.get("online", False))
    known = available_models()
    for peer in as_list(cfg.distill.get("peers")):
        if peer not in known:
            errors.append(f"distill.peers: {peer!r} is not a known model{closest(peer, known)}")
    if online and cfg.teacher.checkpoint is not None:
        errors.append("distill.online trains its peers from scratch; drop teacher.checkpoint (or use distill=kd)")
    if uses_teacher_ and not online and not black_box and cfg.teacher.checkpoint is not None and not errors:
        try:
            path = weights_path(str(cfg.teacher.checkpoint))
            spec = spec_of(checked_metadata(path), path)  # refuses pickles, corrupt files, odd model descriptions
            if spec is not None:
                check_buildable(spec, path)
        except UserError as e:
            errors.append(f"teacher.checkpoint: {e}")
    raise_if(errors)
