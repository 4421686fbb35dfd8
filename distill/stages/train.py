"""``distill train``: distil a teacher into a student.

    distill train teacher=resnet152 student=mobilenet distill.temperature=4 distill.alpha=0.5

The teacher comes from ``teacher.checkpoint`` (a run folder or weights file), else from the newest
finished ``teacher`` run of the same model and dataset under ``paths.root``; when there is none,
it is trained first (and reused next time). ``distill.alpha=0`` trains the student alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from distill.config.adapters import (
    dataset_key,
    load_data,
    model_key,
    model_name,
    model_spec,
    open_loggers,
    output_dir,
    resume_state,
    save_resolved_config,
    setup,
)
from distill.config.checks import check_distill, check_number, check_path, check_training, plain_value, raise_if
from distill.config.entry import hydra_entry
from distill.data.base import Splits
from distill.engine import distributed as dist
from distill.engine.batches import BatchLoader
from distill.engine.cache import (
    CachedTeacher,
    CacheKey,
    build_entry,
    cache_dir_problem,
    file_digest,
    lookup,
    make_view,
    tensor_digest,
)
from distill.engine.checkpoint import read_weights, spec_of, weights_path
from distill.engine.fit import TrainerSettings
from distill.engine.loop import Teachers, autocast, recalibrate_bn
from distill.engine.runs import RunDir, env_info, find_runs, write_json
from distill.engine.tables import MODEL_COLUMNS, model_row, print_table
from distill.engine.taps import HEAD, Taps, resolve_layers
from distill.engine.teacher_backend import onnxruntime_teacher
from distill.errors import UserError, closest
from distill.losses.combined import DistillLoss
from distill.losses.kd import KDLoss
from distill.losses.mutual import peer_loss
from distill.models.logits_teacher import LogitsFileTeacher
from distill.models.onnx_teacher import OnnxTeacher
from distill.models.registry import available_models, build_model
from distill.models.spec import build_from_spec, build_loaded, check_buildable
from distill.stages import auto_teacher
from distill.stages.training import describe, train_model

log = logging.getLogger("distill")

# Teachers known only by their outputs (conf/teacher/onnx.yaml, conf/teacher/logits.yaml).
BLACK_BOX = ("onnx", "logits")


def uses_teacher(cfg: DictConfig) -> bool:
    """Whether the run needs a teacher: a logit term, or a method term that reads one."""
    d = cfg.distill
    if isinstance(d.alpha, (int, float)) and d.alpha > 0:
        return True
    beta = d.get("beta", 0)
    if d.get("method") is None or not isinstance(beta, (int, float)) or beta <= 0:
        return False
    return bool(getattr(get_class(str(d.method._target_)), "uses_teacher", True))


def build_loss(cfg: DictConfig, epochs: int) -> DistillLoss:
    """The run's loss: hard labels, logit KD and the ``distill.method`` module, as configured."""
    d = cfg.distill
    kd = KDLoss(
        temperature=float(d.temperature),
        alpha=float(d.alpha),
        kind=str(d.loss),
        label_smoothing=float(d.get("label_smoothing", 0.0)),
        temperature_end=d.get("temperature_end"),
        epochs=epochs,
    )
    method = instantiate(d.method, _convert_="all") if d.get("method") is not None else None
    return DistillLoss(kd, method, float(d.get("beta", 0.0)))


def as_list(value: Any) -> list[str]:
    """A config value that may be one name or a list of names, as a list."""
    value = plain_value(value)
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


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
    try:
        import timm
    except ImportError:
        errors.append(f"{role}=timm needs the optional extra: pip install 'distill[timm]'")
        return
    if not timm.is_model(str(node.name)):
        names = timm.list_models(f"*{str(node.name)[:4]}*")[:8]
        errors.append(f"{role}.name={node.name!r} is not a timm model{closest(str(node.name), names)}")


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


def validate(cfg: DictConfig) -> None:
    errors: list[str] = []
    check_distill(cfg, errors)
    if errors:
        raise_if(errors)
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
            spec = spec_of(read_weights(path)[1], path)  # refuses pickles, corrupt files, odd model descriptions
            if spec is not None:
                check_buildable(spec, path)
        except UserError as e:
            errors.append(f"teacher.checkpoint: {e}")
    raise_if(errors)


def _teacher_weights(cfg: DictConfig) -> Path | None:
    """The weights file to load the teacher from, training the teacher first if needed."""
    node = cfg.teacher
    if node.checkpoint is not None:
        return weights_path(str(node.checkpoint))
    if dist.world_size() > 1:
        runs = auto_teacher.reusable_for(cfg)
        if not runs:
            raise UserError(
                f"no finished teacher run of {node.name} under {cfg.paths.root}/: under torchrun train it first "
                "(torchrun ... -m distill teacher ...) or give teacher.checkpoint"
            )
        return RunDir(runs[0][0]).best
    return RunDir(auto_teacher.find_or_train(cfg)).best


def load_teacher(
    cfg: DictConfig, data: Splits, device: torch.device, settings: TrainerSettings, weights: Path | None = None
) -> tuple[nn.Module, Path]:
    """The teacher in eval mode without gradients, checked against the dataset's classes.
    ``weights``: the file to load (a resumed run's teacher), instead of resolving it again."""
    if cfg.teacher.name in BLACK_BOX:
        return _black_box_teacher(cfg, data, device, settings), Path(str(cfg.teacher.path))
    return load_frozen(weights or _teacher_weights(cfg), data, device, settings, cfg.teacher)


def _black_box_teacher(cfg: DictConfig, data: Splits, device: torch.device, settings: TrainerSettings) -> nn.Module:
    """A teacher known only by its outputs: an ONNX file, or precomputed logits of the training images."""
    path = str(cfg.teacher.path)
    if cfg.teacher.name == "onnx":
        teacher = OnnxTeacher(path, threads=settings.threads)
        teacher.check_input(data.in_channels, *data.image_size)
        if teacher.classes is not None and list(teacher.classes) != list(data.classes):
            raise UserError(
                f"the ONNX teacher {path} has classes {teacher.classes[:5]}... but dataset {data.name} has "
                f"{data.classes[:5]}...; use a teacher made for this dataset"
            )
        if teacher.num_classes is not None and teacher.num_classes != data.num_classes:
            raise UserError(
                f"the ONNX teacher {path} gives {teacher.num_classes} logits, dataset {data.name} has "
                f"{data.num_classes} classes"
            )
    else:
        teacher = LogitsFileTeacher(path)
        teacher.check(len(data.train_y), data.classes)
        teacher.takes_index = True
        if data.augment != "none":
            log.warning(
                "the precomputed logits in %s are for the original training images, but the student sees "
                "augmented ones (dataset.augment=%s); dataset.augment=none matches them exactly",
                path,
                data.augment,
            )
    log.info("black-box teacher: %s (%s)", path, type(teacher).__name__)
    return teacher.to(device).eval()


def load_frozen(
    path: Path, data: Splits, device: torch.device, settings: TrainerSettings, node: DictConfig | None = None
) -> tuple[nn.Module, Path]:
    """A trained model from a weights file, frozen in eval mode, checked against the dataset."""
    tensors, meta = read_weights(path)
    spec = spec_of(meta, path) or (model_spec(node, data) if node is not None else None)
    if spec is None:
        raise UserError(f"{path} carries no model description; give a weights file written by distill")
    if spec.classes != data.classes:
        raise UserError(
            f"the teacher in {path} was trained on {spec.num_classes} classes ({', '.join(spec.classes[:5])}...) "
            f"but dataset {data.name} has {data.num_classes} ({', '.join(data.classes[:5])}...); "
            "use a teacher trained on this dataset"
        )
    if list(spec.image_size) != list(data.image_size):
        raise UserError(
            f"the teacher in {path} was trained on {spec.image_size} images, dataset {data.name} has "
            f"{list(data.image_size)}"
        )
    model = build_loaded(spec, tensors, path)
    del tensors  # the model holds them now; the channels-last copy below must not sit beside them
    model.to(device).eval().requires_grad_(False)
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    log.info("teacher %s loaded from %s", spec.name, path)
    return model, path


def _teacher_cache(
    cfg: DictConfig,
    teachers: Teachers,
    teacher_path: Path | None,
    data: Splits,
    settings: TrainerSettings,
    device: torch.device,
) -> tuple[CachedTeacher | None, Callable[[int], torch.Tensor] | None, dict[str, Any]]:
    """Reads (or first builds) the teacher's outputs from the cache when they can be cached.

    Returns the cached teacher (or None to run the teacher live), the function giving the
    student's training images of an epoch (the views the cache holds), and what happened.
    """
    mode = str(cfg.cache.enabled).lower()
    teacher = teachers.models[0]
    why_not = None
    if mode == "false":
        why_not = "cache.enabled=false"
    elif len(teachers.models) > 1:
        why_not = "several teachers"
    elif getattr(teacher, "takes_index", False):
        why_not = "the teacher is precomputed logits already"
    elif settings.mix != "none":
        why_not = f"trainer.mix={settings.mix} mixes images after the views are drawn"
    elif teacher_path is None or not Path(teacher_path).is_file():
        why_not = "the teacher has no weights file to key the cache on"
    if why_not:
        (log.warning if mode == "true" else log.info)("teacher cache not used: %s", why_not)
        return None, None, {"used": False, "reason": why_not}
    views = 1 if data.augment == "none" else int(cfg.cache.views or settings.epochs)
    example = data.train_x[:2].to(device).float().div(255)
    layers = plain_value(cfg.distill.get("teacher_layers")) if (cfg.distill.get("beta") or 0) > 0 else None
    tap_names = resolve_layers(teacher, example, layers, "teacher") if layers else []
    # the run's seed draws the views (a seed sweep varies them too) unless cache.seed pins one; no views, no seed
    seed = 0 if data.augment == "none" else int(cfg.seed if cfg.cache.seed is None else cfg.cache.seed)
    key = CacheKey(
        teacher=file_digest(teacher_path),
        images=tensor_digest(data.train_x),
        dataset=dataset_key(cfg),
        augment=data.augment,
        views=views,
        seed=seed,
        taps=tap_names,
        precision=settings.teacher_autocast(),
    )
    root = Path(str(cfg.cache.dir))
    run = {"device": device, "channels_last": settings.channels_last}
    run["autocast_ctx"] = autocast(device, settings.teacher_autocast())
    entry, wrong = lookup(root, key, teacher, data.train_x, seed=int(cfg.seed), **run)
    backend, t0 = None, time.perf_counter()  # what ran the teacher to build the entry, and when it began
    if entry is None:
        with torch.no_grad():
            feat_numel = sum(int(np.prod(f.shape[1:])) for f in _tap_once(teacher, tap_names, example))
        gb = views * len(data.train_y) * (data.num_classes + feat_numel) * 2 / 1e9
        if gb > float(cfg.cache.max_gb):
            why_not = f"it would take {gb:.1f} GB (> cache.max_gb={cfg.cache.max_gb}); fewer cache.views fit"
            log.warning("teacher cache not used: %s", why_not)
            return None, None, {"used": False, "reason": why_not}
        # the backend gives the same logits within float noise (it is checked), far below float16's
        fast, backend = _teacher_backend(cfg, teachers, teacher_path, data, settings, device)
        entry = build_entry(
            root,
            key,
            fast.models[0],
            tap_names,
            data.train_x,
            batch_size=settings.eval_batch_size,
            meta={"teacher_path": str(teacher_path), "dataset": data.name},
            replace=wrong,
            **run,
        )
    if entry.built:
        log.info(
            "teacher cache built: %d view(s) of %d images in %.1f s (%s), %s",
            views,
            len(data.train_y),
            time.perf_counter() - t0,
            backend,
            entry.path,
        )
    else:  # found, or finished by another run while this one waited for it
        log.info("teacher cache hit: %s (%d view(s)); the teacher is not run during training", entry.path, views)
        backend = None
    x, augment = data.train_x, data.augment
    cached = CachedTeacher(entry).to(device)
    return (
        cached,
        (lambda epoch: make_view(x, augment, epoch % views, seed)),  # the views the entry was built on
        {
            "used": True,
            "status": "built" if entry.built else "hit",
            "built_with": backend,
            "views": views,
            "path": str(entry.path),
        },
    )


def _teacher_backend(
    cfg: DictConfig,
    teachers: Teachers,
    teacher_path: Path | None,
    data: Splits,
    settings: TrainerSettings,
    device: torch.device,
) -> tuple[Teachers, str]:
    """The frozen teachers in onnxruntime where ``trainer.teacher_backend`` asks for it (``auto``:
    on CPUs, in float32, when no teacher layer is read), else as they are."""
    want = settings.teacher_backend
    if want == "torch":
        return teachers, "torch"
    why_not = _why_not_onnxruntime(cfg, teachers.models, device)
    if why_not is None and settings.teacher_autocast() != "32":
        why_not = f"the teacher runs in {settings.teacher_autocast()}"
    if why_not:
        (log.warning if want == "onnxruntime" else log.info)("teacher stays in PyTorch: %s", why_not)
        return teachers, "torch"
    paths = [teacher_path, *(weights_path(str(p)) for p in _extra_teachers(cfg))]
    images = data.train_x[: min(64, len(data.train_x))].float().div(255)
    converted = [
        onnxruntime_teacher(m, file_digest(p), Path(str(cfg.cache.dir)), images, settings.threads)
        for m, p in zip(teachers.models, paths)
    ]
    if any(c is None for c in converted):
        return teachers, "torch"
    return Teachers(converted, precision=teachers.precision), "onnxruntime"


def _why_not_onnxruntime(cfg: DictConfig, models: list[Any], device: torch.device) -> str | None:
    """Why these teachers cannot run in onnxruntime (None when they can)."""
    if device.type != "cpu":
        return f"the device is {device.type}"
    if bool(plain_value(cfg.distill.get("teacher_layers"))) and (cfg.distill.get("beta") or 0) > 0:
        return "the method reads the teacher's layers"
    if dist.world_size() > 1:
        return "under torchrun"
    if not all(isinstance(m, nn.Module) and any(True for _ in m.parameters()) for m in models):
        return "the teacher is a black box already"
    return None


def settle_teacher_runtime(
    cfg: DictConfig, teacher: nn.Module | None, teacher_path: Path | None, data: Splits, settings: TrainerSettings
) -> TrainerSettings:
    """With ``teacher_backend`` and ``teacher_precision`` both ``auto`` on a CPU with native bf16, the
    teacher runs where it is faster on this machine: PyTorch in bf16 or onnxruntime in float32,
    measured once per teacher and CPU and remembered under ``cache.dir``. Elsewhere the settings
    stay as they are (without native bf16, float32 in onnxruntime wins; on a GPU, bf16 in PyTorch)."""
    from dataclasses import replace

    from distill.engine.fit import fast_bf16
    from distill.engine.teacher_backend import faster_teacher_runtime

    device = settings.torch_device()
    if (settings.teacher_backend, settings.teacher_precision) != ("auto", "auto") or not fast_bf16(device):
        return settings
    if teacher is None or teacher_path is None or _extra_teachers(cfg) or device.type != "cpu":
        return settings
    if _why_not_onnxruntime(cfg, [teacher], device) is not None:
        return settings
    images = data.train_x[: min(64, settings.eval_batch_size, len(data.train_x))].float().div(255)
    choice, speeds = faster_teacher_runtime(
        teacher, file_digest(teacher_path), Path(str(cfg.cache.dir)), images, settings.threads, settings.channels_last
    )
    log.info(
        "teacher runtime on this CPU: %s (PyTorch bf16 %s img/s, onnxruntime float32 %s img/s; %s %s)",
        "onnxruntime float32" if choice == "onnxruntime" else "PyTorch bf16",
        speeds.get("bf16_images_per_s"),
        speeds.get("onnxruntime_images_per_s", "n/a"),
        "measured now, kept in" if speeds["measured_now"] else "as measured before, in",
        speeds["record"],
    )
    if choice == "onnxruntime":
        return replace(settings, teacher_backend="onnxruntime", teacher_precision="32")
    return replace(settings, teacher_backend="torch", teacher_precision="bf16-mixed")


def _tap_once(teacher: nn.Module, names: list[str], example: torch.Tensor) -> list[torch.Tensor]:
    if not names:
        return []
    with Taps(teacher, names) as taps:
        teacher(example)
        return taps.take()


def _extra_teachers(cfg: DictConfig) -> list[str]:
    """``distill.teachers``: more trained teachers (run folders or weights files) for multi-teacher KD."""
    return as_list(cfg.distill.get("teachers"))


def _online_peers(cfg: DictConfig, data: Splits, device: torch.device, settings: TrainerSettings) -> Teachers:
    """Fresh networks trained alongside the student: ``distill.peers`` names, else the teacher's model."""
    names = as_list(cfg.distill.get("peers")) or [str(cfg.teacher.name)]
    nodes = [cfg.teacher] if not as_list(cfg.distill.get("peers")) else [OmegaConf.create({"name": n}) for n in names]
    peers = []
    for node in nodes:
        net = build_from_spec(model_spec(node, data)).to(device)
        if settings.channels_last:
            net.to(memory_format=torch.channels_last)
        peers.append(net)
    mutual = bool(cfg.distill.get("mutual", False))
    log.info(
        "%s: %s trained from scratch together with the student",
        "deep mutual learning" if mutual else "online distillation",
        ", ".join(names),
    )
    # The peers learn at the temperature the student's method uses (DML: 1), so both sides match.
    method = cfg.distill.get("method")
    temperature = method.get("temperature", cfg.distill.temperature) if method is not None else cfg.distill.temperature
    return Teachers(peers, online=True, peer_loss=peer_loss(float(temperature)) if mutual else None)


def _finish_peers(teachers: Teachers, data: Splits, settings: TrainerSettings, device: torch.device, seed: int) -> None:
    """Recomputes the online peers' BatchNorm statistics and freezes them for the final figures."""
    calib = BatchLoader(
        data.train_x,
        data.train_y,
        settings.batch_size,
        seed=seed + 1,
        device=device,
        channels_last=settings.channels_last,
    )
    for net in teachers.models:
        if settings.bn_recalibrate:
            recalibrate_bn(net, calib, settings.bn_recalibrate_batches)
        net.eval().requires_grad_(False)


def _student_alone(cfg: DictConfig, epochs: int) -> dict[str, Any] | None:
    """Mean test accuracy of finished alpha=0 runs of the same student, data and epochs, if any."""
    root = Path(str(cfg.paths.root))
    match = {
        "alpha": 0.0,
        "method": None,
        "student_key": model_key(cfg.student),
        "dataset_key": dataset_key(cfg),
        "epochs": epochs,
    }
    accs = [s["test_acc"] for _, s in find_runs(root, "train", **match)]
    return {"test_acc_mean": round(sum(accs) / len(accs), 6), "runs": len(accs)} if accs else None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Distils ``cfg.teacher`` into ``cfg.student`` on ``cfg.dataset``; returns (and writes) the summary."""
    validate(cfg)
    settings, device = setup(cfg)
    state = resume_state(cfg)
    # a resumed run learns from the teacher it started with, not a newer run found under paths.root
    resumed_teacher = (state or {}).get("extra", {}).get("teacher_weights")
    if resumed_teacher and not Path(resumed_teacher).is_file():
        raise UserError(f"the teacher this run started with, {resumed_teacher}, is gone: it cannot be resumed")
    data = load_data(cfg)
    T, alpha = float(cfg.distill.temperature), float(cfg.distill.alpha)
    loss_fn = build_loss(cfg, settings.epochs)
    method_name = type(loss_fn.method).__name__ if loss_fn.method is not None and loss_fn.beta > 0 else None
    online = bool(cfg.distill.get("online", False))
    if method_name == "MultiTeacherKD" and not _extra_teachers(cfg):
        log.warning("distill=multi_teacher with one teacher is plain KD: add distill.teachers=[RUN_DIR,...]")
    run_dir = output_dir(cfg)
    if online:
        teachers = _online_peers(cfg, data, device, settings)
        teacher, teacher_path = teachers.models[0], None
    else:
        teacher, teacher_path = (
            load_teacher(cfg, data, device, settings, Path(resumed_teacher) if resumed_teacher else None)
            if loss_fn.uses_teacher
            else (None, None)
        )
        extra = [load_frozen(weights_path(str(p)), data, device, settings)[0] for p in _extra_teachers(cfg)]
        if teacher is not None and not getattr(teacher, "takes_index", False):
            settings = settle_teacher_runtime(cfg, teacher, teacher_path, data, settings)
        teachers = Teachers([teacher, *extra], precision=settings.teacher_autocast()) if teacher is not None else None
    if dist.is_main():
        save_resolved_config(cfg, run_dir)
        write_json(RunDir(run_dir).env, env_info(device))
    cache_info, view_fn = {"used": False, "reason": "no teacher"}, None
    backend, teacher_params = None, sum(p.numel() for p in teacher.parameters()) if teacher is not None else 0
    if teachers is not None and not online:
        # under torchrun rank 0 builds the cache while the others wait, then they all read it
        if not dist.is_main():
            dist.barrier()
        cached, view_fn, cache_info = _teacher_cache(cfg, teachers, teacher_path, data, settings, device)
        if dist.is_main():
            dist.barrier()
        if cached is not None:
            teachers = Teachers([cached])
        else:  # the teacher runs at every step
            teachers, backend = _teacher_backend(cfg, teachers, teacher_path, data, settings, device)
            if backend == "onnxruntime":  # the PyTorch copy goes: its weights live in onnxruntime now
                teacher = teachers.models[0]
    loggers = open_loggers(cfg, run_dir, "train")
    try:
        student, spec, result, best = train_model(
            cfg,
            cfg.student,
            data,
            loss_fn,
            settings,
            device,
            run_dir,
            teachers,
            view_fn=view_fn,
            resume=state,
            extra_state={"teacher_weights": str(teacher_path.resolve()) if teacher_path else None},
            on_epoch=loggers.epoch,
        )
    except BaseException:
        loggers.fail()
        raise
    if not dist.is_main():  # rank 0 measures, writes and reports
        return {"stage": "train", "rank": dist.rank()}
    if online:
        _finish_peers(teachers, data, settings, device, int(cfg.seed))
    s_desc = describe(student, best, data, settings, device)
    can_describe = teacher is not None and not getattr(teacher, "takes_index", False)
    t_desc = describe(teacher, teacher_path, data, settings, device, params=teacher_params) if can_describe else None
    student_alone = _student_alone(cfg, settings.epochs) if teacher is not None else None
    warnings = []
    if t_desc and student_alone and t_desc["test_acc"] <= student_alone["test_acc_mean"]:
        warnings.append(
            f"the teacher ({t_desc['test_acc']:.4f}) is not above the student trained alone "
            f"({student_alone['test_acc_mean']:.4f}, {student_alone['runs']} runs): distillation cannot "
            "be expected to help; train a stronger teacher"
        )
    for w in warnings:
        log.warning(w)
    summary = {
        "stage": "train",
        "student": spec.name,
        "teacher": str(cfg.teacher.name) if teacher is not None else None,
        "dataset": data.name,
        **s_desc,
        "last_test_acc": round(result.last_test_acc, 6),
        "val_acc": round(result.best_val_acc, 6),
        "best_epoch": result.best_epoch,
        "epochs": settings.epochs,
        "teacher_test_acc": t_desc["test_acc"] if t_desc else None,
        "teacher_weights": str(teacher_path.resolve()) if teacher_path else None,
        "student_alone": student_alone,
        "temperature": T,
        "alpha": alpha,
        "loss": str(cfg.distill.loss),
        "method": method_name,
        "beta": loss_fn.beta if method_name else None,
        "train_images_per_s": round(result.train_images_per_s, 1),
        "teacher_cache": cache_info,
        "teacher_backend": backend,  # what ran the teacher at every step (None: the cache, or no teacher)
        "train_seconds": round(result.train_seconds, 2),
        "bn_recalibrated_images": result.bn_recalibrated_images,
        "seed": int(cfg.seed),
        "weights": str(best.resolve()),
        "warnings": warnings,
        "student_key": model_key(cfg.student),
        "dataset_key": dataset_key(cfg),
    }
    summary["loggers"] = loggers.finish(summary, [best])
    write_json(RunDir(run_dir).summary, summary)
    t_label = f"teacher {cfg.teacher.name}"
    if online:
        peers = as_list(cfg.distill.get("peers")) or [str(cfg.teacher.name)]
        t_label = f"{'peer' if cfg.distill.get('mutual') else 'online teacher'} {peers[0]}"
    rows = [model_row(t_label, t_desc)] if t_desc else []
    how = f" ({method_name or 'kd'})" if teacher is not None else (f" ({method_name})" if method_name else " (alone)")
    rows.append(model_row(f"student {spec.name}{how}", s_desc))
    if student_alone:
        rows.append(
            [f"student alone ({student_alone['runs']} runs)", student_alone["test_acc_mean"], None, None, None, None]
        )
    print_table(
        f"{data.name}: T={T:g} alpha={alpha:g} loss={cfg.distill.loss}"
        + (f" + {loss_fn.beta:g} x {method_name}" if method_name else "")
        + f", best epoch {result.best_epoch}/"
        f"{settings.epochs} by val acc; run {run_dir}",
        MODEL_COLUMNS,
        rows,
    )
    return summary


main = hydra_entry("train", run, metric="val_acc")

if __name__ == "__main__":
    main()
