"""A teacher known only through its outputs: precomputed logits for every training image.

The file is a ``.safetensors`` file holding one float tensor ``logits`` of shape (N, K), row i
for training image i, and optionally the metadata entry ``classes``: a JSON list of the K class
names in output order. :func:`write_logits_file` writes one. No pickle is involved either way.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from distill.errors import UserError
from distill.io import publish

_KEY = "logits"


def write_logits_file(path: str | Path, logits: torch.Tensor, classes: Sequence[str] | None = None) -> Path:
    """Writes teacher ``logits`` (N, K) and optionally their ``classes`` as a safetensors file.

    The file appears whole or not at all (written beside the target, then renamed).

    Raises:
        ValueError: logits that are not 2-D, or a number of classes other than K.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (samples, classes), got shape {tuple(logits.shape)}")
    if classes is not None and len(classes) != logits.shape[1]:
        raise ValueError(f"{len(classes)} class names for {logits.shape[1]} logits per sample")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "distill teacher logits"}
    if classes is not None:
        metadata["classes"] = json.dumps([str(c) for c in classes])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".safetensors")
    os.close(fd)
    try:
        save_file({_KEY: logits.detach().to("cpu", torch.float32).contiguous()}, tmp, metadata=metadata)
        publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


class LogitsFileTeacher(nn.Module):
    """Teacher logits looked up by training-sample index in a precomputed table.

    Call it with the indices of a batch's images in the training split to get their rows.
    The table is a non-persistent buffer: ``.to(device)`` moves it, checkpoints do not carry it,
    and there are no parameters (``requires_grad_`` changes nothing).

    Args:
        path: a ``.safetensors`` file with a float tensor ``logits`` (N, K) and optional
            metadata ``classes`` (a JSON list of K names).

    Raises:
        UserError: the file is missing or unreadable, has no 2-D float ``logits`` tensor, holds
            NaN or infinite values, or names a number of classes other than K.
    """

    logits: torch.Tensor

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"teacher logits file {self.path} does not exist")
        try:
            with safe_open(str(self.path), framework="pt") as f:
                keys = list(f.keys())
                metadata = f.metadata() or {}
                logits = f.get_tensor(_KEY) if _KEY in keys else None
        except Exception as e:  # safetensors raises SafetensorError, OSError, ...
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{self.path} is not a safetensors file of teacher logits ({first})") from e
        if logits is None:
            raise UserError(f"{self.path} has no tensor {_KEY!r} (it has {keys or 'none'})")
        if logits.dim() != 2 or not logits.is_floating_point():
            raise UserError(
                f"{self.path}: {_KEY!r} must be a float tensor (samples, classes), "
                f"got {logits.dtype} of shape {tuple(logits.shape)}"
            )
        logits = logits.float()
        if not torch.isfinite(logits).all():
            raise UserError(f"{self.path}: {_KEY!r} holds NaN or infinite values")
        self._classes = self._read_classes(metadata.get("classes"), logits.shape[1])
        self.register_buffer("logits", logits, persistent=False)

    def _read_classes(self, text: str | None, k: int) -> list[str] | None:
        if text is None:
            return None
        try:
            classes = json.loads(text)
        except ValueError as e:
            raise UserError(f"{self.path}: metadata 'classes' is not JSON ({e})") from e
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise UserError(f"{self.path}: metadata 'classes' must be a JSON list of names, got {text[:80]!r}")
        if len(classes) != k:
            raise UserError(f"{self.path}: metadata names {len(classes)} classes but the logits have {k} columns")
        return classes

    @property
    def classes(self) -> list[str] | None:
        """Class names in column order, when the file gives them."""
        return None if self._classes is None else list(self._classes)

    @property
    def num_samples(self) -> int:
        return self.logits.shape[0]

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    def check(self, num_samples: int, classes: Sequence[str]) -> None:
        """Raises one UserError listing every way the table does not fit the training split."""
        problems = []
        if self.num_samples != num_samples:
            problems.append(f"it has {self.num_samples} rows but the training split has {num_samples} images")
        if self.num_classes != len(classes):
            problems.append(f"it has {self.num_classes} logits per image but the dataset has {len(classes)} classes")
        elif self._classes is not None and self._classes != list(classes):
            i = next(i for i, (a, b) in enumerate(zip(self._classes, classes)) if a != b)
            problems.append(
                f"its classes differ from the dataset's at position {i}: {self._classes[i]!r} vs {classes[i]!r}"
            )
        if problems:
            raise UserError(f"teacher logits {self.path}: {'; '.join(problems)}")

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """Rows (len(index), K) of the table as float32 on ``index``'s device.

        Args:
            index: integer indices into the training split (any shape; the rows follow it).
        """
        if index.is_floating_point() or index.dtype == torch.bool:
            raise TypeError(f"index must be an integer tensor, got {index.dtype}")
        return self.logits[index.to(self.logits.device)].to(index.device)
