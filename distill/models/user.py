"""A user's own networks: ``student._target_=mypkg.models.make_net`` (and ``teacher._target_``).

The target is any importable callable (a function or an ``nn.Module`` class) that returns an
``nn.Module`` taking NCHW images and returning logits. It is called with the config's ``kwargs``
plus, where its signature takes them, ``num_classes``, ``in_channels`` and ``image_size`` of the
dataset. A network that does not take ``num_classes`` gets its last Linear layer replaced when it
has another number of outputs; one that does not take ``in_channels`` is fed as many channels as its
first convolution wants (a grey image is repeated).

Trust: a weights file records the target it was built from, but a file must never choose what code
runs. A target read from a file is imported only when the user named it for this command (as
``student._target_`` or ``teacher._target_``, or in ``trust_code=mypkg.models.make_net``) or passed
``trust_code=true``; otherwise the file is refused with a line that says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

from distill.errors import UserError

# A dotted Python path with at least one dot: "mypkg.models.make_net". Built-in names have none
# (resnet18, mobilenet_v2, vit_tiny) or start with "timm/".
_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
# What distill passes itself when the callable takes it; a user kwarg must not name these.
DATA_ARGS = ("num_classes", "in_channels", "image_size")

# (targets the user named for this command, whether every target is trusted)
_TRUST: contextvars.ContextVar[tuple[frozenset[str], bool]] = contextvars.ContextVar(
    "distill_trusted_targets", default=(frozenset(), False)
)


def is_target(name: Any) -> bool:
    """Whether a model name is a user's ``_target_`` (a dotted Python path) rather than a built-in."""
    return isinstance(name, str) and _TARGET.fullmatch(name) is not None


def node_target(node: Any) -> str | None:
    """The ``_target_`` of a model config node, or None."""
    target = node.get("_target_") if node is not None else None
    return None if target is None else str(target)


def trust_setting(cfg: Any) -> tuple[frozenset[str], bool]:
    """What a command's config trusts: the targets it names and its ``trust_code`` value
    (``true``, ``false``, or one dotted path or a list of them)."""
    named = {t for role in ("student", "teacher") if (t := node_target(cfg.get(role))) is not None}
    value = cfg.get("trust_code", False)
    if value is True:
        return frozenset(named), True
    if isinstance(value, str):
        named.add(value)
    elif value not in (None, False):
        named.update(str(v) for v in value)
    return frozenset(named), False


def trust_problem(cfg: Any) -> str | None:
    """What is wrong with ``trust_code`` (None when it is sound)."""
    value = cfg.get("trust_code", False)
    if isinstance(value, bool) or value is None:
        return None
    values = [value] if isinstance(value, str) else list(value) if hasattr(value, "__iter__") else [value]
    if all(is_target(v) for v in values):
        return None
    return f"trust_code must be true, false, or the dotted path of a callable (mypkg.models.make_net), got {value!r}"


@contextlib.contextmanager
def trusting(cfg: Any) -> Iterator[None]:
    """Within this block, targets read from files are imported as ``cfg`` allows."""
    if problem := trust_problem(cfg):
        raise UserError(problem)
    token = _TRUST.set(trust_setting(cfg))
    try:
        yield
    finally:
        _TRUST.reset(token)


@contextlib.contextmanager
def trusting_targets(targets: tuple[str, ...] = (), everything: bool = False) -> Iterator[None]:
    """As :func:`trusting`, from Python (``distill.load(run, trust_code=...)``)."""
    token = _TRUST.set((frozenset(targets), everything))
    try:
        yield
    finally:
        _TRUST.reset(token)


def trust_state() -> tuple[frozenset[str], bool]:
    """What the user trusts now (a key part of anything loaded under it, so a later run trusting less
    does not reuse it)."""
    return _TRUST.get()


def check_trusted(target: str, path: Path) -> None:
    """Refuses a target that a file (``path``) names unless the user named or trusted it."""
    named, everything = _TRUST.get()
    if everything or target in named:
        return
    raise UserError(
        f"{path} was built by {target}, code outside distill, which a file alone cannot choose to run: "
        f"name it again (trust_code={target}, or student._target_/teacher._target_={target} for the model "
        "it is), or pass trust_code=true if you trust this file"
    )


def resolve(target: str) -> Callable[..., Any]:
    """The callable a dotted path names (imported here; only for targets the user gave): the longest
    importable module prefix, then attributes (``mypkg.models.Net.create`` works too)."""
    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            fn = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is not None and not module.startswith(e.name):  # the module exists; an import inside fails
                raise UserError(f"cannot import {target}: importing {module}: {e}") from None
            continue
        except Exception as e:  # noqa: BLE001 - whatever the user's module raises when imported
            raise UserError(f"cannot import {target}: importing {module} raised {type(e).__name__}: {e}") from None
        try:
            for attr in parts[i:]:
                fn = getattr(fn, attr)
        except AttributeError:
            raise UserError(f"cannot import {target}: {module} has no {'.'.join(parts[i:])}") from None
        break
    else:
        raise UserError(f"cannot import {target}: no module {parts[0]} (is its folder on PYTHONPATH?)")
    if not callable(fn):
        raise UserError(f"{target} is not callable (a function or nn.Module class that builds the network)")
    return fn


def call_arguments(fn: Callable[..., Any], target: str, data: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments ``fn`` is called with: ``kwargs`` and those of ``data`` its signature names."""
    clash = sorted(set(kwargs) & set(DATA_ARGS))
    if clash:
        raise UserError(f"{target}: {', '.join(clash)} come from the dataset; drop them from kwargs")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: give it the kwargs only
        return dict(kwargs)
    if unknown := unknown_kwargs(params, kwargs):
        raise UserError(f"{target} takes no argument {', '.join(unknown)}")
    return {**{k: v for k, v in data.items() if k in params}, **kwargs}


def unknown_kwargs(params: Any, kwargs: dict[str, Any]) -> list[str]:
    """The ``kwargs`` a signature's ``params`` do not take (none when it takes ``**kwargs``)."""
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    return [k for k in kwargs if k not in params]


def _first_conv_channels(net: nn.Module) -> int | None:
    conv = next((m for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return None if conv is None else int(conv.in_channels)


def build_user_net(
    target: str, num_classes: int, in_channels: int, image_size: tuple[int, int], kwargs: dict[str, Any]
) -> tuple[nn.Module, int]:
    """Calls ``target`` for a dataset; returns the network and the channels it takes."""
    from distill.models.registry import _replace_head

    fn = resolve(target)
    data = {"num_classes": num_classes, "in_channels": in_channels, "image_size": tuple(image_size)}
    args = call_arguments(fn, target, data, kwargs)
    try:
        net = fn(**args)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad model arguments for {target}: {e}") from None
    if not isinstance(net, nn.Module):
        raise UserError(f"{target} returned {type(net).__name__}, not a torch.nn.Module")
    if "num_classes" not in args:
        try:
            _replace_head(net, num_classes)
        except UserError:
            raise UserError(
                f"{target} takes no num_classes and has no Linear head to fit to the dataset's {num_classes} "
                "classes: give it a num_classes argument"
            ) from None
    channels = in_channels if "in_channels" in args else (_first_conv_channels(net) or in_channels)
    if channels not in (in_channels, 3) or (channels != in_channels and in_channels != 1):
        raise UserError(
            f"{target} takes {channels}-channel images and the dataset has {in_channels}; "
            "give it an in_channels argument"
        )
    return net, channels


def build_call(target: str, num_classes: int, in_channels: int, image_size: list[int], kwargs: dict) -> str:
    """The Python call that builds a fresh network of this target (for the bare export's metadata)."""
    fn = resolve(target)
    data = {"num_classes": num_classes, "in_channels": in_channels, "image_size": tuple(image_size)}
    args = call_arguments(fn, target, data, kwargs)
    return f"{target}({', '.join(f'{k}={v!r}' for k, v in args.items())})"
