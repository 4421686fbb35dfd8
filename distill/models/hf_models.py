"""Hugging Face image classifiers (``transformers``' ``AutoModelForImageClassification``), an optional
extra: ``pip install 'distill[hf]'``.

``teacher=hf teacher.name=ORG/NAME`` (from the local hub cache; ``HF_HUB_OFFLINE=1`` without network)
or ``teacher.name=/path/to/folder`` (written by ``save_pretrained``). ``weights: pretrained`` loads the
checkpoint's weights, ``null`` builds the architecture from its config alone. The model's labels
(``config.id2label``) are checked against the dataset's classes: when they name every class, the
classifier keeps those outputs (in the classes' order) and a ``train`` teacher is used as it is;
otherwise the head is replaced by a fresh one for the dataset's classes (and a teacher is fine-tuned
first).

A weights file written by distill carries the model's config (JSON) in its description: rebuilding
it reads no folder and fetches nothing; the config's ``model_type`` picks the class from transformers'
own fixed table, and ``auto_map`` (remote code) is dropped.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

from torch import nn

from distill.errors import UserError

_EXTRA = "pip install 'distill[hf]'"
# Config entries that name code, a place or a kernel to fetch: never kept in (or read from) a weights
# file, at any depth (attention then takes transformers' default, sdpa or eager)
_DROPPED = (
    "auto_map", "_name_or_path", "custom_pipelines", "transformers_version", "quantization_config",
    "attn_implementation", "_attn_implementation", "_attn_implementation_autoset", "_attn_implementation_internal",
)  # fmt: skip
# Model types whose config names another library's model to fetch (timm_wrapper: a timm name, hf-hub: or
# local-dir:, and timm's loading arguments): use teacher=timm for those
_REFUSED_TYPES = ("timm_wrapper",)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as e:
        raise UserError(f"Hugging Face models need the optional extra: {_EXTRA}") from e
    return transformers


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' load reports and progress bars off while distill loads a model."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def _source_config(name: str) -> Any:
    """The config of ``name`` (a folder, or a hub id in the local cache), without remote code."""
    transformers = _transformers()
    try:
        with _quiet():
            return transformers.AutoConfig.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError) as e:
        from huggingface_hub.constants import HF_HUB_CACHE

        raise UserError(
            f"cannot read the Hugging Face model {name!r} ({_first(e)[:160]}): give a folder written by "
            f"save_pretrained, or a hub id whose files are in the cache {HF_HUB_CACHE} (on a machine with "
            f"network: `hf download {name}`, then copy that cache folder here and set HF_HUB_OFFLINE=1)"
        ) from None


def labels_of(config: Any) -> list[str]:
    return [str(config.id2label[i]) for i in range(int(config.num_labels))]


def _generic(labels: list[str]) -> bool:
    """transformers' placeholder names (LABEL_0, LABEL_1, ...): a config that names no classes."""
    return all(re.fullmatch(r"LABEL_\d+", label) for label in labels)


def labels_match(labels: list[str], classes: list[str]) -> bool:
    """Whether a classifier's outputs are the dataset's classes in order (placeholder names match by count)."""
    return labels == list(classes) or (_generic(labels) and len(labels) == len(classes))


def covers(labels: list[str], classes: list[str]) -> bool:
    """Whether a classifier's outputs include every one of the dataset's classes (by label)."""
    return labels_match(labels, classes) or set(classes) <= set(labels)


def pretrained_labels(name: str) -> list[str]:
    """The labels of the checkpoint ``name`` (read from its config)."""
    return labels_of(_source_config(name))


def resolve(name: str, classes: list[str]) -> str:
    """The model's config for the dataset as JSON: the checkpoint's, its labels set to ``classes``."""
    config = _source_config(name)
    if not hasattr(config, "num_labels") or not getattr(config, "id2label", None):
        raise UserError(f"{name} is not an image classifier config (no labels)")
    data = _dropped(config.to_dict())
    data["id2label"] = {str(i): c for i, c in enumerate(classes)}
    data["label2id"] = {c: i for i, c in enumerate(classes)}
    return json.dumps(data, sort_keys=True)


def _dropped(value: Any) -> Any:
    """``value`` without the :data:`_DROPPED` entries, at any depth; a pretrained backbone never fetched."""
    if isinstance(value, dict):
        out = {k: _dropped(v) for k, v in value.items() if k not in _DROPPED}
        if "use_pretrained_backbone" in out:
            out["use_pretrained_backbone"] = False
        return out
    if isinstance(value, list):
        return [_dropped(v) for v in value]
    return value


def config_problem(text: Any) -> str | None:
    """What is wrong with a config read from a weights file (None when it is sound): JSON of a mapping
    whose ``model_type`` transformers knows and that does not name another library's model."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return "kwargs.config is not JSON"
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        return "kwargs.config has no model_type"
    if data["model_type"] in _REFUSED_TYPES:
        return f"kwargs.config is a {data['model_type']} config (it names a model to fetch); use teacher=timm"
    return None


def _config(text: str) -> Any:
    """A config object from JSON, its class looked up in transformers' table by ``model_type``."""
    transformers = _transformers()
    problem = config_problem(text)
    if problem:
        raise UserError(problem)
    data = _dropped(json.loads(text))
    model_type = data.pop("model_type")
    try:
        return transformers.AutoConfig.for_model(model_type, **data)
    except Exception as e:  # noqa: BLE001 - an unknown type, or values its config class refuses
        raise UserError(f"not a {model_type!r} config transformers can build: {_first(e)}") from None


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def hf_net(
    name: str, config: str, pretrained: bool, classes: list[str] | None = None
) -> tuple[nn.Module, int, tuple[int, int] | None]:
    """The classifier ``config`` describes, with the weights of ``name`` when ``pretrained``; returns it,
    the channels it takes, and the (H, W) its inputs are resized to (None: any size).

    A pretrained head keeps its outputs for the dataset's ``classes`` when its labels name them all
    (reordered to the classes' order); otherwise it is replaced by a fresh one."""
    from distill.models.registry import _replace_head

    transformers = _transformers()
    cfg = _config(config)
    with _quiet():
        try:
            if pretrained:  # with the checkpoint's own head: its rows are picked below
                net = transformers.AutoModelForImageClassification.from_pretrained(name, trust_remote_code=False)
            else:
                net = transformers.AutoModelForImageClassification.from_config(cfg, trust_remote_code=False)
        except Exception as e:  # noqa: BLE001 - OSError, ValueError, or a config value the model refuses
            raise UserError(f"cannot build the Hugging Face model {name!r}: {_first(e)}") from None
    if pretrained:
        labels = labels_of(net.config)
        wanted = list(classes) if classes is not None else labels_of(cfg)
        if labels_match(labels, wanted):
            _replace_head(net, len(wanted))  # kept: its outputs are the classes already
        elif covers(labels, wanted):
            _replace_head(net, len(wanted), [labels.index(c) for c in wanted])
        else:
            _replace_head(net, len(wanted), fresh=True)
        net.config = cfg
    size = getattr(cfg, "image_size", None)
    if isinstance(size, int):
        size = (size, size)
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        size = (int(size[0]), int(size[1]))
    else:
        size = None
    return net, int(getattr(cfg, "num_channels", 3)), size
