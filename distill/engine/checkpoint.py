"""Weights in safetensors with the model's description embedded; training state for torch.load.

A weights file carries everything needed to rebuild its model (architecture, classes, input
size, normalisation) and the config it was trained with, so ``eval`` and ``export`` need only the
file or its run folder. Nothing here unpickles: weights go through safetensors and training state
through ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save
from torch import nn

from distill.engine.runs import RunDir
from distill.errors import UserError
from distill.io import atomic_write
from distill.models.spec import ModelSpec, build_loaded, check_buildable, spec_problem
from distill.models.user import check_trusted, is_target

FORMAT = "distill-weights"
FORMAT_VERSION = "1"


def _digest(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """sha256 of the model description, the config and every tensor (name, dtype, shape, bytes)."""
    h = hashlib.sha256()
    for key in ("format", "format_version", "model", "config"):
        h.update(f"{key}={meta.get(key)}\n".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_weights(path: str | Path, model: nn.Module, spec: ModelSpec, config: dict | None = None) -> Path:
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": json.dumps(asdict(spec)),
        "config": json.dumps(config or {}),
    }
    meta["sha256"] = _digest(tensors, meta)
    return atomic_write(path, st_save(tensors, metadata=meta))


def _describe_bad_file(path: Path) -> str:
    head = path.read_bytes()[:4]
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return (
            f"{path} is a pickle (torch.save) file, which distill never loads (it can run code); "
            "save the state dict with safetensors.torch.save_file and pass that"
        )
    return f"{path} is not a safetensors weights file (corrupt or truncated?)"


_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


def _read_tensors(path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, each read into memory of its own.

    safetensors' reader memory-maps the file, and every tensor it returns keeps the whole mapping
    resident: a model that then converts some weights (channels-last) holds the file's pages beside
    the copies, twice its size (a resnet152 teacher: +220 MB). Plain reads at the offsets of the
    format's JSON header (8-byte length, then the header) put each tensor in its own memory once.
    """
    out = {}
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        base = 8 + size
        for name in names:
            info = header[name]
            start, end = info["data_offsets"]
            tensor = torch.empty(info["shape"], dtype=_DTYPES[info["dtype"]])
            if end - start != tensor.numel() * tensor.element_size():
                raise ValueError(f"{name}: {end - start} bytes for shape {info['shape']}")
            if tensor.numel():
                f.seek(base + start)
                if f.readinto(memoryview(tensor.view(-1).view(torch.uint8).numpy())) != end - start:
                    raise ValueError(f"{name}: the file ends inside it")
            out[name] = tensor
    return out


# Files already read whole and found sound (checksum and all), by path, size and modification time:
# the checks of a sweep's jobs (and of each member before it runs) open one teacher file once.
_CHECKED: dict[tuple[str, int, int], dict[str, str]] = {}


def checked_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file, after reading it whole as :func:`read_weights` does; a file
    unchanged since it was last found sound here is not read again."""
    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _CHECKED:
        return _CHECKED[key]
    meta = read_weights(path)[1]
    if key is not None:
        _CHECKED[key] = meta
    return meta


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file; a clear UserError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:  # safetensors validates the header and layout
            meta = f.metadata() or {}
            names = list(f.keys())
        if not isinstance(meta, dict):
            raise ValueError("metadata is not a mapping")
        tensors = _read_tensors(path, names)
    except (
        SafetensorError,
        ValueError,
        KeyError,
        TypeError,
        json.JSONDecodeError,
        OSError,
        UnicodeDecodeError,
        RuntimeError,
    ):
        raise UserError(_describe_bad_file(path)) from None
    # distill's own files carry a checksum: a flipped byte anywhere is caught before anything is built
    if meta.get("format") == FORMAT and "sha256" in meta and meta["sha256"] != _digest(tensors, meta):
        raise UserError(f"{path} is damaged: its contents do not match the checksum written with it")
    return tensors, meta


def spec_of(meta: dict[str, str], path: Path) -> ModelSpec | None:
    """The ModelSpec embedded in a distill weights file (None for a plain safetensors state dict)."""
    if meta.get("format") != FORMAT:
        return None
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path} has weights format version {meta.get('format_version')}, "
            f"this distill reads version {FORMAT_VERSION}"
        )
    try:
        described = json.loads(meta["model"])
        spec = ModelSpec(**described)
    except (KeyError, TypeError, json.JSONDecodeError, RecursionError):
        raise UserError(f"{path} has a damaged model description; re-export it from its run") from None
    problem = spec_problem(spec)
    if problem:
        raise UserError(f"{path}: model.{problem}")
    if is_target(spec.name):  # a file names code outside distill: imported only on the user's word
        check_trusted(spec.name, path)
    return spec


STATE_FILE_FORMAT = "distill-state-file"


def save_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Training state for ``torch.load(weights_only=True)``, inside an envelope with its sha256:
    torch's zip files carry no checked checksum, so a flipped byte would load silently."""
    inner = io.BytesIO()
    torch.save(state, inner)
    payload = inner.getbuffer()  # the serialised state once in memory: hashed and written from here
    envelope = {
        "format": STATE_FILE_FORMAT,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(payload, dtype=torch.uint8),
    }
    return atomic_write(path, lambda f: torch.save(envelope, f))


def load_state(path: str | Path) -> dict[str, Any]:
    """What :func:`save_state` wrote, after checking its checksum; a UserError for anything else."""
    bad = f"{path} is not a distill training state, or it is damaged"
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(outer, dict) or outer.get("format") != STATE_FILE_FORMAT:
            raise UserError(bad)
        payload = outer["payload"].numpy().tobytes()
        if hashlib.sha256(payload).hexdigest() != outer["sha256"]:
            raise UserError(f"{path} is damaged: its contents do not match the checksum written with it")
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception:  # weights_only refuses anything but tensors and plain containers
        raise UserError(bad) from None
    if not isinstance(state, dict):
        raise UserError(bad)
    return state


def weights_path(run: str | Path) -> Path:
    """``run`` as a weights file: a run folder means its ``checkpoints/best.safetensors``."""
    path = Path(run)
    if path.is_dir():
        best = RunDir(path).best
        if not best.is_file():
            raise UserError(f"{path} holds no checkpoints/best.safetensors: not a finished distill run folder")
        return best
    if not path.is_file():
        raise UserError(f"{path} does not exist; give a run folder (outputs/train/...) or a .safetensors file")
    return path


def run_folder(weights: Path) -> Path:
    """The folder results about ``weights`` go to: its run folder for ``RUN/checkpoints/*.safetensors``,
    else the folder the file is in."""
    return RunDir.of_weights(weights).path


def _required_spec(meta: dict[str, str], path: Path) -> ModelSpec:
    spec = spec_of(meta, path)
    if spec is None:
        raise UserError(
            f"{path} is a safetensors file without distill's model description; "
            "pass a file written by distill teacher/train"
        )
    return spec


def check_weights(run: str | Path) -> Path:
    """Raises UserError unless ``run`` is a distill weights file (or a run folder holding one) whose
    model can be built."""
    path = weights_path(run)
    check_buildable(_required_spec(checked_metadata(path), path), path)
    return path


def load_model(run: str | Path) -> tuple[nn.Module, ModelSpec, dict, Path]:
    """Rebuilds the model saved in a distill weights file (or run folder) in eval mode.

    Returns:
        The model, its spec, the config it was trained with, and the weights file's path.
    """
    path = weights_path(run)
    tensors, meta = read_weights(path)
    spec = _required_spec(meta, path)
    model = build_loaded(spec, tensors, path)
    try:
        config = json.loads(meta.get("config", "{}") or "{}")
    except json.JSONDecodeError:
        raise UserError(f"{path} has a damaged training config; re-export it from its run") from None
    return model.eval(), spec, config, path
