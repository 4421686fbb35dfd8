"""The student as a ``torch.export`` program, ``model.pt2``: one graph with its weights and its
preprocessing inside (normalisation, channel repetition, resizing), batch size free, for PyTorch's
own deployment paths (``torch.export.load(...).module()``, AOTInductor, ExecuTorch)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from distill.io import atomic_write


def export_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Exports ``model`` (eval mode) traced on ``example`` (float NCHW in [0, 1]) with a free batch size."""
    model = model.eval()
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    return atomic_write(path, lambda f: torch.export.save(program, f))


def check_pt2(model: nn.Module, path: Path, images: torch.Tensor) -> float:
    """Largest absolute difference between the saved program and ``model`` on ``images``."""
    program = torch.export.load(path).module()
    with torch.no_grad():
        return float((program(images) - model.eval()(images)).abs().max())
