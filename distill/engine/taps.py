"""Read intermediate features of any model with forward hooks, without editing the model.

Layers are named as in ``model.named_modules()`` (``distill inspect`` lists them with their
output shapes). Two names are special: ``head`` is the input of the model's last ``nn.Linear``
(the penultimate embedding), and ``auto`` (a whole list) picks the last block of each stage:
for every spatial resolution a network passes through, the shallowest module that is the last
to produce it. Models without feature maps (MLPs, vision transformers) get their hidden layers
or evenly spaced encoder blocks instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from distill.errors import UserError, closest

HEAD = "head"


@dataclass
class LayerInfo:
    name: str
    kind: str
    shape: tuple[int, ...]  # output shape of one sample (batch dimension dropped)
    params: int
    order: int  # position in execution order of the first call


def _first_tensor(out: object) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def head_name(model: nn.Module) -> str:
    """The name of the last ``nn.Linear`` of ``model`` (the classification head)."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError(f"{type(model).__name__} has no Linear head, so the tap {HEAD!r} does not exist")
    return linears[-1]


@torch.no_grad()
def trace_layers(model: nn.Module, example: torch.Tensor) -> list[LayerInfo]:
    """Every named module that produces a tensor on ``example``, with its per-sample output shape."""
    infos: dict[str, LayerInfo] = {}
    hooks = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod: nn.Module, inp: object, out: object, name: str = name) -> None:
            t = _first_tensor(out)
            if t is not None and name not in infos:
                own = sum(p.numel() for p in mod.parameters())
                infos[name] = LayerInfo(name, type(mod).__name__, tuple(t.shape[1:]), own, len(infos))

        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return sorted(infos.values(), key=lambda i: i.order)


def auto_layers(layers: list[LayerInfo], limit: int = 4, head: str | None = None) -> list[str]:
    """The last block of each stage: per spatial resolution, the shallowest last module producing it."""
    maps = [i for i in layers if len(i.shape) == 3]
    tokens = [i for i in layers if len(i.shape) == 2 and i.params > 0]
    if maps and len(tokens) <= sum(i.params > 0 for i in maps):
        groups: dict[tuple[int, ...], list[LayerInfo]] = {}
        for info in maps:
            groups.setdefault(info.shape[1:], []).append(info)
        picked = []
        for members in groups.values():
            learned = [m for m in members if m.params > 0]
            if not learned:  # a pooling step, not a stage
                continue
            depth = min(m.name.count(".") for m in learned)
            picked.append([m for m in learned if m.name.count(".") == depth][-1])
        picked.sort(key=lambda i: i.order)
        return [i.name for i in picked[-limit:]]
    # No feature maps: the siblings with parameters inside the largest container (encoder blocks,
    # hidden layers of an MLP), the classification head excluded, at most ``limit`` evenly spaced.
    by_parent: dict[str, list[LayerInfo]] = {}
    for info in layers:
        if info.params > 0 and info.name != head and info.name.count(".") > 0:  # not the head, not "net"
            by_parent.setdefault(info.name.rpartition(".")[0], []).append(info)
    if not by_parent:
        return []
    members = max(by_parent.values(), key=lambda m: (len(m), m[0].name.count(".")))  # ties: the deeper
    if len(members) > limit:
        step = len(members) / limit
        members = [members[int((k + 1) * step) - 1] for k in range(limit)]
    return [m.name for m in members]


def _head_or_none(model: nn.Module) -> str | None:
    try:
        return head_name(model)
    except UserError:
        return None


def resolve_layers(model: nn.Module, example: torch.Tensor, spec: str | Sequence[str] | None, role: str) -> list[str]:
    """Turns ``auto``, ``head`` or a list of names into module names, checking each exists.

    Raises:
        UserError: naming the unknown layer, the closest names, and how to list them all.
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        spec = [spec]
    layers = None
    names: list[str] = []
    for item in spec:
        item = str(item)
        if item == "auto":
            layers = layers or trace_layers(model, example)
            names += auto_layers(layers, head=_head_or_none(model))
        elif item == HEAD:
            names.append(HEAD)
        else:
            names.append(item)
    known = dict(model.named_modules())
    for name in names:
        if name != HEAD and name not in known:
            valid = [n for n in known if n]
            shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
            raise UserError(
                f"distill.{role}_layers: {type(model).__name__} has no layer {name!r}{closest(name, valid)}; "
                f"its layers: {shown} (distill inspect {role}=NAME shows them with their shapes)"
            )
    if HEAD in names:
        head_name(model)
    return names


class Taps:
    """Forward hooks that keep the outputs of named layers during the next forward pass.

    ``head`` keeps the *input* of the last Linear layer. Use as a context manager, or call
    :meth:`close`; :meth:`take` returns the features of the last forward, in the order given.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.names = list(names)
        self._out: dict[str, torch.Tensor] = {}
        self._hooks = []
        modules = dict(model.named_modules())
        for name in self.names:
            if name == HEAD:
                mod = modules[head_name(model)]
                self._hooks.append(mod.register_forward_pre_hook(self._keep_input(name)))
            else:
                self._hooks.append(modules[name].register_forward_hook(self._keep_output(name)))

    def _keep_output(self, name: str):
        def hook(mod: nn.Module, inp: object, out: object) -> None:
            self._out[name] = _first_tensor(out)

        return hook

    def _keep_input(self, name: str):
        def hook(mod: nn.Module, inp: tuple) -> None:
            self._out[name] = inp[0]

        return hook

    def take(self) -> list[torch.Tensor]:
        feats = [self._out.pop(n) for n in self.names]
        self._out.clear()
        return feats

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._out.clear()

    def __enter__(self) -> Taps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach_taps(
    student: nn.Module,
    teacher: nn.Module | None,
    method: nn.Module,
    student_layers: str | Sequence[str] | None,
    teacher_layers: str | Sequence[str] | None,
    example: torch.Tensor,
    num_classes: int,
    num_samples: int,
) -> tuple[Taps | None, Taps | None, list[str]]:
    """Resolves the layers a method reads, hooks them, and builds the method's connectors.

    One forward pass of ``example`` through both models (in eval mode, without autograd) gives the
    shapes the connectors are made from, so a wrong layer name or an impossible pairing fails
    before the first training step.

    Returns:
        The student's taps, the teacher's taps (None when not needed) and a description line per tap.
    """
    s_names = resolve_layers(student, example, student_layers, "student")
    t_names: list[str] = []
    cached = teacher is not None and hasattr(teacher, "feats")  # a teacher cache holds the features
    if teacher_layers and getattr(method, "uses_teacher", True) and cached:
        t_names = list(teacher.entry.meta["key"]["taps"])
    elif teacher_layers and getattr(method, "uses_teacher", True):
        if teacher is None or not list(teacher.named_modules())[1:]:
            raise UserError(
                "this distill method reads the teacher's layers, but the teacher gives logits only "
                "(an ONNX file or precomputed logits); use a logit method: distill=kd, dkd or dist"
            )
        t_names = resolve_layers(teacher, example, teacher_layers, "teacher")
    s_taps = Taps(student, s_names) if s_names else None
    t_taps = Taps(teacher, t_names) if t_names and not cached else None
    with torch.no_grad():
        was_training = student.training
        student.eval()
        student(example)
        student.train(was_training)
        s_feats = s_taps.take() if s_taps else []
        if t_taps is not None:
            teacher(example)
        t_feats = t_taps.take() if t_taps else []
    s_shapes = [tuple(f.shape[1:]) for f in s_feats]
    t_shapes = [tuple(f.shape[1:]) for f in t_feats]
    if cached and t_names:
        t_shapes = [tuple(a.shape[2:]) for a in teacher.entry.feats]
    try:
        method.build(s_shapes, t_shapes, num_classes, num_samples)
    except (ValueError, RuntimeError) as e:
        raise UserError(
            f"cannot join student layers {s_names} {s_shapes} to teacher layers {t_names} {t_shapes}: {e}"
        ) from e
    method.to(example.device)
    lines = [f"student {n} {tuple(s)}" for n, s in zip(s_names, s_shapes)]
    lines += [f"teacher {n} {tuple(s)}" for n, s in zip(t_names, t_shapes)]
    return s_taps, t_taps, lines
