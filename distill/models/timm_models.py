"""timm (huggingface/pytorch-image-models) networks, an optional extra: ``pip install 'distill[timm]'``.

Models are built without touching the network (``pretrained=False``); pretrained weights come from a
local file. A checkpoint made for another number of classes gets a fresh head, and one made for
RGB images has its first convolution adapted to the dataset's channels (timm's own rules).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.errors import UserError, closest

_EXTRA = "pip install 'distill[timm]'"
_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Where timm-style training scripts nest the weights, in timm's order of preference (EMA first).
_NESTED = ("state_dict_ema", "model_ema", "state_dict", "model")


def _timm() -> Any:
    try:
        import timm
    except ImportError as e:
        raise UserError(f"timm models need the optional extra: {_EXTRA}") from e
    return timm


def _names(value: Any) -> list[str]:
    """A pretrained_cfg entry such as ``first_conv`` or ``classifier`` as a list of module names."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or PyTorch weights file, never unpickling anything but tensors."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif path.suffix in _TORCH_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise UserError(f"checkpoint {path} must be a .safetensors or {'/'.join(_TORCH_SUFFIXES)} file")
    except pickle.UnpicklingError as e:
        raise UserError(
            f"checkpoint {path} holds more than weights and is not unpickled; save it as .safetensors"
        ) from e
    except (OSError, RuntimeError, ValueError) as e:
        raise UserError(f"cannot read checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if isinstance(state, dict):
        nested = next((state[k] for k in _NESTED if isinstance(state.get(k), dict)), None)
        state = nested if nested is not None else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"checkpoint {path} is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_weights(net: nn.Module, path: Path, in_channels: int) -> None:
    """Loads ``path`` into ``net``, adapting the first convolution and replacing a head of another size."""
    from timm.models import adapt_input_conv

    state = _read_state_dict(path)
    own = net.state_dict()
    cfg = getattr(net, "pretrained_cfg", None) or {}
    for conv in _names(cfg.get("first_conv")):
        key = f"{conv}.weight"
        if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
            state[key] = adapt_input_conv(in_channels, state[key])
    fresh = set()
    for head in _names(cfg.get("classifier")):
        for key in (f"{head}.weight", f"{head}.bias"):
            if key in state and key in own and state[key].shape != own[key].shape:
                del state[key]
                fresh.add(key)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches
        lines = [s.strip() for s in str(e).splitlines() if "size mismatch" in s]
        raise UserError(f"checkpoint {path} does not fit the model: {lines[0] if lines else e}") from e
    missing = [k for k in missing if k not in fresh]
    if missing or unexpected:
        raise UserError(
            f"checkpoint {path} does not fit the model: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )


def _built_size(net: nn.Module, cfg: dict[str, Any]) -> tuple[int, int]:
    """The (H, W) the model is built for: a ViT's patch embedding knows it; otherwise its default config."""
    size = getattr(getattr(net, "patch_embed", None), "img_size", None)
    if size is not None:
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    input_size = cfg.get("input_size") or (3, 224, 224)
    return int(input_size[-2]), int(input_size[-1])


def _accepts(net: nn.Module, in_channels: int, size: tuple[int, int]) -> bool:
    """Whether one forward pass at ``size`` works (fixed-size ViTs assert, deep CNNs run out of pixels)."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, in_channels, *size))
        return True
    except (RuntimeError, ValueError, AssertionError):
        return False
    finally:
        net.train(was_training)


def _pinned(timm) -> dict[str, Any]:
    """timm's arguments that fetch or load something, set by us: a kwarg (possibly read from a weights
    file) naming one is refused by Python's "multiple values" TypeError. Only those this timm has."""
    import inspect

    wanted = {"pretrained": False, "checkpoint_path": "", "pretrained_cfg": None, "pretrained_cfg_overlay": None}
    wanted["cache_dir"] = None
    accepted = inspect.signature(timm.create_model).parameters
    return {k: v for k, v in wanted.items() if k in accepted}


def timm_net(
    name: str,
    num_classes: int,
    in_channels: int,
    image_size: tuple[int, int],
    checkpoint: str | None = None,
    kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, tuple[int, int] | None]:
    """Builds timm model ``name`` for a dataset; returns it and the (H, W) to resize inputs to, or None.

    Inputs are resized to the model's default input size when the model does not take the
    dataset's ``image_size`` as it is (a fixed-size ViT, or an image below ``min_input_size``).

    Args:
        name: a timm model name (``timm.list_models()``), e.g. ``resnet18``, ``vit_tiny_patch16_224``.
        num_classes: outputs of the head.
        in_channels: channels of the dataset's images (timm builds the stem for them).
        image_size: (H, W) of the dataset's images.
        checkpoint: a local ``.safetensors`` (or ``.pth``/``.bin``, loaded with ``weights_only``)
            weights file; a head of another size is replaced by a fresh one.
        kwargs: extra arguments to ``timm.create_model`` (e.g. ``drop_rate``, ``img_size``).

    Raises:
        UserError: timm is not installed, the name is unknown, the arguments are bad, or the
            checkpoint is missing or does not fit.
    """
    timm = _timm()
    try:
        # no kwarg makes timm download anything or torch.load a file of its choosing (see _pinned)
        net = timm.create_model(name, **_pinned(timm), num_classes=num_classes, in_chans=in_channels, **(kwargs or {}))
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise UserError(f"cannot build timm model {name} ({e})") from e
        raise UserError(
            f"unknown timm model {name!r}{closest(name, timm.list_models())}; see timm.list_models()"
        ) from e
    except (TypeError, ValueError, AssertionError, OSError) as e:
        raise UserError(f"bad arguments for timm model {name}: {type(e).__name__}: {e}") from e
    if checkpoint is not None:
        _load_weights(net, Path(checkpoint), in_channels)
    size = tuple(int(s) for s in image_size)
    target = _built_size(net, getattr(net, "pretrained_cfg", None) or {})
    if size == target:
        return net, None
    min_size = (getattr(net, "pretrained_cfg", None) or {}).get("min_input_size")
    too_small = bool(min_size) and (size[0] < min_size[-2] or size[1] < min_size[-1])
    return net, (target if too_small or not _accepts(net, in_channels, size) else None)
