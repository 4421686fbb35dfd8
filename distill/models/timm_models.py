"""timm (huggingface/pytorch-image-models) networks, an optional extra: ``pip install 'distill[timm]'``.

A model starts from random weights, from a local weights file (``weights: FILE``), or from timm's own
pretrained weights (``pretrained: true``, or an ``hf-hub:org/repo`` name), which timm loads from the
local Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME``; nothing is fetched with ``HF_HUB_OFFLINE=1``)
or downloads. Weights made for another number of classes get a fresh head, and ones made for RGB
images have their first convolution adapted to the dataset's channels (timm's own rules).

A weights file distill writes records the model by its plain timm name (``timm/resnet18.a1_in1k``,
never ``hf-hub:``) and its arguments: rebuilt from a file, the model is that architecture built from
scratch holding the file's tensors, and nothing is fetched, whatever the file says.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distill.errors import UserError, closest, first_line

_EXTRA = "pip install 'distill[timm]'"
# The initial weights of a model built with timm's pretrained ones: "pretrained:" and the name timm
# loads them for (resnet18.a1_in1k, hf-hub:timm/resnet18.a1_in1k); see timm_record.
PRETRAINED = "pretrained:"
_HUB = "hf-hub:"
# A Hugging Face repo id (org/name) with an optional @revision.
_HUB_NAME = re.compile(r"hf-hub:([\w.\-]+/[\w.\-]+)(@[\w.\-/]+)?")
# Arguments of a hub model's config.json that distill sets itself (the dataset's), or that make timm
# fetch or load something: never recorded.
_NOT_RECORDED = (
    "num_classes",
    "in_chans",
    "pretrained",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "checkpoint_path",
    "cache_dir",
)
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


def _is_plain(v: Any) -> bool:
    """A value a weights file may record (numbers, strings, lists of them; see spec_problem)."""
    if isinstance(v, (list, tuple)):
        return all(_is_plain(x) for x in v)
    return isinstance(v, (str, int, float, bool, type(None)))


def _hub_name(name: str) -> tuple[str, str | None]:
    """The repo id and revision of ``hf-hub:org/repo[@revision]``."""
    match = _HUB_NAME.fullmatch(name)
    if match is None:
        raise UserError(f"timm model {name!r}: a hub name is hf-hub:ORG/REPO, e.g. hf-hub:timm/resnet18.a1_in1k")
    return match.group(1), (match.group(2) or "")[1:] or None


def timm_record(
    name: str, kwargs: dict[str, Any], pretrained: Any = False, weights: str | None = None
) -> tuple[str, dict[str, Any], str | None]:
    """A timm model node as (the plain timm name it is recorded by, its arguments, its initial weights).

    ``pretrained`` (implied by an ``hf-hub:`` name) makes the initial weights ``pretrained:<name>``:
    timm's own, loaded by :func:`timm_net`; else they are ``weights`` (a local file, or None). The
    recorded name is what a weights file says: ``resnet18.a1_in1k`` as it is, and for
    ``hf-hub:org/repo`` the architecture its config.json names (with its tag when timm knows the repo
    under that name) and the config's ``model_args`` before the node's own ``kwargs``.

    Raises:
        UserError: ``pretrained`` is not true or false, both ``pretrained`` and ``weights`` are given,
            or a hub model's config.json cannot be read (not cached, offline, no such repo).
    """
    if pretrained not in (True, False, None):
        raise UserError(f"timm model {name}: pretrained must be true or false, got {pretrained!r}")
    hub = name.startswith(_HUB)
    if weights is not None and (pretrained or hub):
        raise UserError(
            f"timm model {name}: pretrained weights{' (an hf-hub: name)' if hub else ''} and a local weights file "
            f"({weights}) are given; keep one"
        )
    if not hub:
        return name, dict(kwargs), (f"{PRETRAINED}{name}" if pretrained else weights)
    repo, _ = _hub_name(name)
    timm = _timm()
    try:
        found = timm.models.load_model_config_from_hf(name[len(_HUB) :])
    except OSError as e:  # not cached and not downloadable, no such repo, no access
        raise _fetch_error(name, e) from None
    cfg, arch = found[0], found[1]
    model_args = found[2] if len(found) > 2 else {}  # timm < 1.0.20 returns no model_args
    tagged = f"{arch}.{cfg['tag']}" if cfg.get("tag") else arch
    try:
        known = timm.models.get_pretrained_cfg(tagged)
    except RuntimeError:  # a tag timm does not know
        known = None
    plain = tagged if known is not None and known.hf_hub_id == repo else arch
    recorded = {k: v for k, v in (model_args or {}).items() if k not in _NOT_RECORDED}
    odd = sorted(k for k, v in recorded.items() if not _is_plain(v))
    if odd:
        raise UserError(
            f"timm model {name}: its config.json's model_args {odd} are not plain values distill can record"
        )
    return plain, {**recorded, **dict(kwargs)}, f"{PRETRAINED}{name}"


def _weights_location(source: str) -> tuple[str | None, str | None, list[tuple[str, ...]], str | None]:
    """Where timm looks for the pretrained weights of ``source``: (hub repo, revision, the files it reads,
    each as the names timm tries in turn, download URL). The repo is None for weights timm downloads
    from a URL into torch's hub folder."""
    weights = ("model.safetensors", "pytorch_model.bin")  # timm's default, safetensors first
    if source.startswith(_HUB):
        repo, revision = _hub_name(source)
        return repo, revision, [("config.json",), weights], None
    cfg = _timm().models.get_pretrained_cfg(source)
    if cfg is not None and cfg.hf_hub_id:
        if cfg.hf_hub_filename:
            try:
                from timm.models._hub import _get_safe_alternatives  # as timm looks for them
            except ImportError:
                safe = []
            else:
                safe = list(_get_safe_alternatives(cfg.hf_hub_filename))
            weights = (*safe, cfg.hf_hub_filename)
        return cfg.hf_hub_id, None, [weights], None
    return None, None, [], (cfg.url if cfg is not None else None)


def _missing(source: str) -> tuple[str | None, list[Path]]:
    """The pretrained weights files of ``source`` not on this machine (the hub repo they come from,
    and their paths in the Hugging Face cache, or in torch's hub folder for URL downloads)."""
    repo, revision, files, url = _weights_location(source)
    if repo is None:
        if not url:
            return None, []
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        return None, ([] if path.is_file() else [path])
    from huggingface_hub import constants, try_to_load_from_cache

    def cached(name: str) -> bool:
        return isinstance(try_to_load_from_cache(repo, name, revision=revision), str)

    folder = (
        Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / (revision or "<commit>")
    )
    return repo, [folder / names[0] for names in files if not any(cached(n) for n in names)]


def _not_here(source: str, missing: list[Path], repo: str | None, error: BaseException | None) -> str:
    """The line for pretrained weights that are not on this machine: the file, where it goes, how to get it."""
    from huggingface_hub import constants

    paths = ", ".join(str(p) for p in missing)
    if constants.HF_HUB_OFFLINE:
        why, then = "HF_HUB_OFFLINE=1 forbids downloading", ""
    else:
        cause = error
        while cause is not None and cause.__cause__ is not None:  # the network's error, not the hub's wrapper
            cause = cause.__cause__
        why = "could not be downloaded" + (f" ({type(cause).__name__}: {first_line(cause, 100)})" if cause else "")
        then = ", then run with HF_HUB_OFFLINE=1"
    if repo is None:
        _, _, _, url = _weights_location(source)
        return (
            f"timm model {source}: its pretrained weights {paths} are missing and {why}; on a machine with "
            f"network download {url} and copy it to that path"
        )
    folder = missing[0].parents[2]
    return (
        f"timm model {source}: its pretrained weights are not in the Hugging Face cache ({paths} "
        f"{'is' if len(missing) == 1 else 'are'} missing) and {why}; on a machine with network run "
        f"`hf download {repo}` and copy its cache folder {folder.name} into {folder.parent} "
        f"(HF_HUB_CACHE, by default $HF_HOME/hub){then}"
    )


def _fetch_error(source: str, error: BaseException) -> UserError:
    """One line for pretrained weights (or a hub model's config.json) timm could not get."""
    try:
        repo, missing = _missing(source)
    except (OSError, RuntimeError, ValueError):
        repo, missing = None, []
    if missing:
        return UserError(_not_here(source, missing, repo, error))
    return UserError(
        f"timm model {source}: cannot get its pretrained weights ({type(error).__name__}: {first_line(error, 160)})"
    )


def _pretrained_problem(source: str) -> str | None:
    """Why timm cannot load pretrained weights for plain name ``source`` (a known tag with weights)."""
    timm = _timm()
    arch, tag = timm.models.split_model_name_tag(source)
    if not timm.is_model(arch):
        return None  # an unknown model: said when it is built
    tagged = timm.list_models(arch, pretrained=True)
    try:
        cfg = timm.models.get_pretrained_cfg(source)
    except RuntimeError:  # an unknown tag
        return f"timm has no weights {tag!r} for {arch}{closest(source, tagged)}; its pretrained ones: {tagged}"
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        return f"timm has no pretrained weights for {source}; pretrained ones: {tagged[:8] or 'none'}"
    return None


def node_problems(role: str, name: str, pretrained: Any, weights: str | None, builds: bool = True) -> list[str]:
    """What is wrong with a ``timm`` model node, found without building it: an unknown model or tag,
    weights timm does not have, or, with ``HF_HUB_OFFLINE=1``, pretrained weights not in the cache.
    ``builds``: whether the command builds the model from its initial weights (a teacher given as
    ``teacher.checkpoint`` is not: its pretrained weights are not needed then)."""
    try:
        timm = _timm()
    except UserError:
        return [f"{role}=timm needs the optional extra: {_EXTRA}"]
    hub = name.startswith(_HUB)
    if not hub and not timm.is_model(name):
        names = timm.list_models(f"*{name[:4]}*")[:8]
        return [f"{role}.name={name!r} is not a timm model{closest(name, names)}"]
    if not hub and (pretrained or "." in name) and (problem := _pretrained_problem(name)):
        return [f"{role}.name={name!r}: {problem}"]
    try:
        if hub:
            _hub_name(name)
        if builds:  # an hf-hub: name's config.json is read here (the cache, or the hub)
            timm_record(name, {}, pretrained, weights)
    except UserError as e:
        return [f"{role}: {e}"]
    from huggingface_hub import constants

    if builds and (pretrained or hub) and constants.HF_HUB_OFFLINE:
        repo, missing = _missing(name)
        if missing:
            return [f"{role}: {_not_here(name, missing, repo, None)}"]
    return []


def _pinned(timm) -> dict[str, Any]:
    """timm's arguments that fetch or load something, set by us: a kwarg (possibly read from a weights
    file) naming one is refused by Python's "multiple values" TypeError. Only those this timm has."""
    import inspect

    wanted = {"pretrained": False, "checkpoint_path": "", "pretrained_cfg": None, "pretrained_cfg_overlay": None}
    wanted["cache_dir"] = None
    accepted = inspect.signature(timm.create_model).parameters
    return {k: v for k, v in wanted.items() if k in accepted}


def _create(timm, name: str, num_classes: int, in_channels: int, kwargs: dict[str, Any], pretrained: bool = False):
    """``timm.create_model`` with our pinned arguments (see _pinned); its errors as one line."""
    pinned = {**_pinned(timm), "pretrained": pretrained}
    try:
        return timm.create_model(name, **pinned, num_classes=num_classes, in_chans=in_channels, **kwargs)
    except RuntimeError as e:
        if "Unknown model" not in str(e):
            raise UserError(f"cannot build timm model {name} ({first_line(e)})") from e
        raise UserError(
            f"unknown timm model {name!r}{closest(name, timm.list_models())}; see timm.list_models()"
        ) from e
    except OSError as e:
        if pretrained:  # not in the cache and not downloadable, no such repo, no access
            raise _fetch_error(name, e) from e
        raise UserError(f"bad arguments for timm model {name}: {type(e).__name__}: {e}") from e
    except (TypeError, ValueError, AssertionError) as e:
        raise UserError(f"bad arguments for timm model {name}: {type(e).__name__}: {e}") from e


def _pretrained(timm, source: str, name: str, num_classes: int, in_channels: int, kwargs: dict[str, Any]):
    """timm model ``source`` with timm's pretrained weights (head replaced, stem adapted by timm), and the
    pretrained_cfg of ``name``, the plain name it is recorded by, after checking that ``name`` with
    ``kwargs`` builds the same architecture (so a weights file of it loads again)."""
    if not source.startswith(_HUB) and (problem := _pretrained_problem(source)):
        raise UserError(f"timm model {source}: {problem}")
    net = _create(timm, source, num_classes, in_channels, kwargs, pretrained=True)
    if source == name:
        return net, getattr(net, "pretrained_cfg", None) or {}
    with torch.device("meta"):
        plain = _create(timm, name, num_classes, in_channels, kwargs)
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    want = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    if got != want:
        key = next(k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))
        raise UserError(
            f"timm model {source} is not timm/{name} with arguments {kwargs} (at {key}: {got.get(key)} vs "
            f"{want.get(key)}), so distill could not load its weights files again; give its architecture's "
            "arguments in kwargs"
        )
    return net, getattr(plain, "pretrained_cfg", None) or {}


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
        name: a plain timm model name (``timm.list_models()``), e.g. ``resnet18``, ``resnet18.a1_in1k``,
            ``vit_tiny_patch16_224``; never ``hf-hub:`` (a weights file may have named it).
        num_classes: outputs of the head.
        in_channels: channels of the dataset's images (timm builds the stem for them).
        image_size: (H, W) of the dataset's images.
        checkpoint: a local ``.safetensors`` (or ``.pth``/``.bin``, loaded with ``weights_only``)
            weights file; a head of another size is replaced by a fresh one. Or ``pretrained:<source>``
            (from :func:`timm_record`): timm's pretrained weights for ``source`` (``name`` itself, or
            the ``hf-hub:`` name it was recorded from), from the Hugging Face cache or the hub.
        kwargs: extra arguments to ``timm.create_model`` (e.g. ``drop_rate``, ``img_size``).

    Raises:
        UserError: timm is not installed, the name is unknown, the arguments are bad, the checkpoint
            is missing or does not fit, or the pretrained weights are neither cached nor downloadable
            (the line names the missing file, where it goes and how to fetch it).
    """
    timm = _timm()
    kwargs = dict(kwargs or {})
    if checkpoint is not None and checkpoint.startswith(PRETRAINED):
        net, cfg = _pretrained(timm, checkpoint[len(PRETRAINED) :], name, num_classes, in_channels, kwargs)
    else:
        # no kwarg makes timm download anything or torch.load a file of its choosing (see _pinned)
        net = _create(timm, name, num_classes, in_channels, kwargs)
        cfg = getattr(net, "pretrained_cfg", None) or {}
        if checkpoint is not None:
            _load_weights(net, Path(checkpoint), in_channels)
    size = tuple(int(s) for s in image_size)
    target = _built_size(net, cfg)
    if size == target:
        return net, None
    min_size = cfg.get("min_input_size")
    too_small = bool(min_size) and (size[0] < min_size[-2] or size[1] < min_size[-1])
    return net, (target if too_small or not _accepts(net, in_channels, size) else None)
