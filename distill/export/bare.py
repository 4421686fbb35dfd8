"""The network alone, as its own library builds it: ``model.safetensors`` beside ``model.onnx``.

distill's weights files hold a :class:`~distill.models.registry.Classifier` (normalisation buffers
and the network under ``net.``). The bare file holds only the network's state dict, so the library
the architecture comes from loads it as it is::

    net = torchvision.models.get_model("mobilenet_v3_small", num_classes=10)
    net.load_state_dict(safetensors.torch.load_file("model.safetensors"))

Its metadata says which library, which call builds the network, and what the network expects as
input (mean and std to normalise with, channels, size): the preprocessing the Classifier did.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save

from distill.io import atomic_write
from distill.models.registry import _EXACT_SIZE_PREFIXES, TIMM_PREFIX, ZOO, Classifier
from distill.models.spec import ModelSpec
from distill.models.user import build_call, is_target


def _library(model: Classifier, spec: ModelSpec) -> tuple[str, str]:
    """(library, the Python call that builds a fresh network for this state dict), from the class
    of the network itself (``vgg13`` is distill's or torchvision's depending on how it was built)."""
    extra = "".join(f", {k}={v!r}" for k, v in spec.kwargs.items())
    n, c = spec.num_classes, spec.in_channels
    library = type(model.net).__module__.split(".")[0]
    if library == "timm":
        return "timm", f"timm.create_model({spec.name[len(TIMM_PREFIX) :]!r}, num_classes={n}, in_chans={c}{extra})"
    if library == "torchvision":
        if spec.name.startswith(_EXACT_SIZE_PREFIXES) and "image_size" not in spec.kwargs:  # built for its size
            extra = f", image_size={(model.net_size or spec.image_size)[0]}{extra}"
        return "torchvision", f"torchvision.models.get_model({spec.name!r}, num_classes={n}{extra})"
    if is_target(spec.name):  # the user's own callable, with the arguments distill gave it
        return library, build_call(spec.name, n, c, spec.image_size, spec.kwargs)
    if spec.name not in ZOO:  # not one of the builders distill knows: the class, for the user to call
        cls = type(model.net)
        return library, f"{cls.__module__}.{cls.__qualname__}(...)"
    fn = ZOO[spec.name][0]
    native = f", image_size={tuple(spec.image_size)}" if ZOO[spec.name][1] is None else ""
    return "distill", f"{fn.__module__}.{fn.__name__}(num_classes={n}, in_channels={c}{native}{extra})"


def bare_metadata(model: Classifier, spec: ModelSpec) -> dict[str, str]:
    """What the bare file's network is and expects, as safetensors metadata (strings)."""
    library, call = _library(model, spec)
    size = list(model.net_size) if model.net_size is not None else list(spec.image_size)
    return {
        "format": "distill-bare-network",
        "library": library,
        "build": call,
        "classes": json.dumps(spec.classes),
        "input": json.dumps(
            {
                "channels": model.net_channels,
                "height": size[0],
                "width": size[1],
                "range": [0.0, 1.0],
                "normalize": {"mean": spec.mean, "std": spec.std},
                "grey_to_rgb": model.net_channels != spec.in_channels,
                "resized_from": list(spec.image_size) if model.net_size is not None else None,
            }
        ),
    }


def write_bare(model: Classifier, spec: ModelSpec, path: Path) -> Path:
    """Writes the network's own state dict (``net.`` stripped, no normalisation buffers) to ``path``."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    return atomic_write(path, save(tensors, metadata=bare_metadata(model, spec)))
