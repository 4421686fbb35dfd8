"""Shape helpers shared by the feature methods: maps, vectors, tokens, learned connectors and layer pairing.

Features come in three layouts: maps ``(B, C, H, W)``, vectors ``(B, D)`` and token sequences
``(B, N, D)`` (vision transformers, maybe with a CLS token first). A method turns tokens into a map
with :func:`as_map` (when they lie on a square grid) or into a vector with :func:`as_vector`, and
joins a student feature to a teacher feature of another shape with :func:`make_connector`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAP, VECTOR = "map", "vector"
Shapes = list[tuple[int, ...]]  # per-sample feature shapes, as Method.build receives them


def _square_side(n: int) -> int | None:
    side = math.isqrt(n) if n > 0 else 0
    return side if side > 0 and side * side == n else None


def _grid(num_tokens: int) -> tuple[int, int] | None:
    """(tokens to skip at the front, grid side): a CLS token is dropped when the rest is a square."""
    if num_tokens > 1 and (side := _square_side(num_tokens - 1)) is not None:
        return 1, side
    if (side := _square_side(num_tokens)) is not None:
        return 0, side
    return None


def as_map(f: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` as is; tokens ``(B, N, D)`` as a ``(B, D, h, w)`` map.

    The first token (CLS) is dropped when the other ``N - 1`` form a square grid; otherwise all
    ``N`` are used when ``N`` is a perfect square.

    Raises:
        ValueError: for vectors, or tokens that do not lie on a square grid.
    """
    if f.dim() == 4:
        return f
    if f.dim() == 3 and (grid := _grid(f.shape[1])) is not None:
        skip, side = grid
        tokens = f[:, skip:]
        return tokens.transpose(1, 2).reshape(f.shape[0], f.shape[2], side, side)
    raise ValueError(
        f"a feature of shape {tuple(f.shape[1:])} is not a map: expected (C, H, W) or (N, D) tokens with N or N-1 a "
        "perfect square"
    )


def as_vector(f: torch.Tensor) -> torch.Tensor:
    """``(B, D)``: global average pool of maps, mean over tokens, flatten otherwise."""
    if f.dim() == 4:
        return f.mean(dim=(2, 3))
    if f.dim() == 3:
        return f.mean(dim=1)
    return f.flatten(1)


def kind_of(shape: tuple[int, ...]) -> str:
    """``map`` for per-sample ``(C, H, W)`` and for tokens on a square grid, ``vector`` otherwise."""
    if len(shape) == 3 or (len(shape) == 2 and _grid(shape[0]) is not None):
        return MAP
    return VECTOR


def map_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The per-sample ``(C, H, W)`` that :func:`as_map` gives for a feature of this shape."""
    if len(shape) == 3:
        return tuple(shape)  # type: ignore[return-value]
    grid = _grid(shape[0]) if len(shape) == 2 else None
    if grid is None:
        raise ValueError(f"a feature of shape {tuple(shape)} is not a map")
    return shape[1], grid[1], grid[1]


def vector_dim(shape: tuple[int, ...]) -> int:
    """The width of :func:`as_vector` for a feature of this per-sample shape."""
    if len(shape) in (2, 3):
        return shape[-1] if len(shape) == 2 else shape[0]
    return math.prod(shape)


def as_kind(f: torch.Tensor, kind: str) -> torch.Tensor:
    return as_map(f) if kind == MAP else as_vector(f)


def as_target(t: torch.Tensor, s_connected: torch.Tensor) -> torch.Tensor:
    """A teacher feature in the layout of a connected student feature: pooled to a vector when the
    connector's output is one (student vector, teacher map), a map otherwise; detached, float32."""
    t = t.detach().float()
    return as_vector(t) if s_connected.dim() == 2 else as_map(t)


class Connector(nn.Module):
    """Maps a student feature onto a teacher feature's shape (see :func:`make_connector`)."""

    def __init__(self, s_shape: tuple[int, ...], t_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.s_kind, self.t_kind = kind_of(s_shape), kind_of(t_shape)
        self.size: tuple[int, int] | None = None
        if self.s_kind == MAP and self.t_kind == MAP:
            (cs, hs, ws), (ct, ht, wt) = map_shape(s_shape), map_shape(t_shape)
            self.body = nn.Sequential(nn.Conv2d(cs, ct, kernel_size=1, bias=False), nn.BatchNorm2d(ct))
            self.size = (ht, wt) if (hs, ws) != (ht, wt) else None
        elif self.s_kind == MAP:
            self.body = nn.Linear(map_shape(s_shape)[0], vector_dim(t_shape))
        else:  # a student vector meets a teacher vector, or a teacher map compared pooled
            t_dim = map_shape(t_shape)[0] if self.t_kind == MAP else vector_dim(t_shape)
            self.body = nn.Linear(vector_dim(s_shape), t_dim)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = as_kind(f.float(), self.s_kind)
        if self.s_kind == MAP and self.t_kind != MAP:
            x = as_vector(x)
        x = self.body(x)
        if self.size is not None:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return x.float()


def make_connector(s_shape: tuple[int, ...], t_shape: tuple[int, ...]) -> Connector:
    """A learned map from a student feature to the teacher feature's shape (per-sample shapes).

    - map -> map: 1x1 convolution (no bias) and BatchNorm2d, then a bilinear resize to the teacher's
      ``H x W`` when the sizes differ;
    - map -> vector: global average pool, then Linear;
    - vector -> vector: Linear;
    - vector -> map: Linear to the teacher's channels; compare with the pooled teacher
      (:func:`as_target` gives it).

    Tokens on a square grid count as maps (:func:`as_map`), other token sequences as vectors.
    """
    return Connector(tuple(s_shape), tuple(t_shape))


def pair_up(n_student: int, n_teacher: int) -> list[tuple[int, int]]:
    """Pairs of ``(student layer, teacher layer)`` positions.

    Equal counts pair in order; otherwise each layer of the shorter list goes with an evenly spaced
    layer of the longer one, the last with the last (2 student and 4 teacher layers: (0, 1), (1, 3)).
    """
    if n_student <= 0 or n_teacher <= 0:
        return []
    short, long = sorted((n_student, n_teacher))
    picks = [int((k + 1) * long / short) - 1 for k in range(short)]
    if n_student <= n_teacher:
        return list(zip(range(n_student), picks))
    return list(zip(picks, range(n_teacher)))


def check_pairs(s_count: int, t_count: int) -> list[tuple[int, int]]:
    """:func:`pair_up`, refusing empty layer lists with a message a user can act on."""
    if s_count == 0 or t_count == 0:
        raise ValueError(
            f"this method needs student and teacher layers (got {s_count} and {t_count}); "
            "set distill.student_layers and distill.teacher_layers"
        )
    return pair_up(s_count, t_count)
