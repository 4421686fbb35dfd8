"""Datasets described by a config read from a file: a weights file's training config, a cache entry's key.

Such a config is data, never code. Hydra's ``instantiate`` on it would call whatever importable
function its ``_target_`` names (``pathlib.Path.write_text``, ``numpy.load`` with pickles allowed,
...), so a file handed over by someone else could run code. Here the ``_target_`` is only looked up
in a fixed table of distill's own dataset builders (the ``conf/dataset`` options as shipped), the
arguments must be plain values the builder takes, and a stored config never downloads anything.
Anything else is refused in one line naming the file and the key.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from distill.data.base import Splits
from distill.errors import UserError


def builders() -> dict[str, Callable[..., Splits]]:
    """The dataset builders a stored config may name, by the ``_target_`` the shipped configs use."""
    from distill.data import embedded, filelist, imagefolder, synthetic, torchvision_sets

    table = [
        embedded.digits,
        embedded.mnist5k,
        torchvision_sets.cifar10,
        torchvision_sets.cifar100,
        torchvision_sets.mnist,
        torchvision_sets.fashion_mnist,
        imagefolder.imagefolder,
        filelist.filelist,
        synthetic.synthetic,
    ]
    return {f"{fn.__module__}.{fn.__name__}": fn for fn in table}


_PLAIN = (str, int, float, bool, type(None))


def stored_dataset_args(node: Any, where: str) -> tuple[Callable[..., Splits], dict[str, Any]]:
    """The builder and arguments a stored dataset config names, after checking both.

    Args:
        node: the stored config (a plain dict, as read from JSON or YAML).
        where: the file and key it was read from, for the error message (``FILE: config.dataset``).

    Raises:
        UserError: the config names anything but one of :func:`builders`, or its arguments are not
            plain values that builder takes.
    """
    if not isinstance(node, dict):
        raise UserError(f"{where} is not a dataset config (a mapping), got {type(node).__name__}")
    table = builders()
    target = node.get("_target_")
    if not isinstance(target, str) or target not in table:
        names = ", ".join(t.rsplit(".", 1)[1] for t in table)
        raise UserError(
            f"{where}._target_={target!r} is not one of distill's datasets ({names}); "
            "a config read from a file may only name those"
        )
    fn = table[target]
    kwargs = {k: v for k, v in node.items() if k != "_target_"}
    for key, value in kwargs.items():
        if not isinstance(key, str) or not isinstance(value, _PLAIN):
            raise UserError(f"{where}.{key}={value!r}: a stored dataset argument must be a plain value")
    if "download" in kwargs:
        kwargs["download"] = False  # a file never decides to fetch anything, or where to write it
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as e:
        raise UserError(f"{where}: {target.rsplit('.', 1)[1]} does not take these arguments ({e})") from None
    return fn, kwargs


def build_stored_dataset(node: Any, where: str) -> Splits:
    """The dataset a stored config describes (see :func:`stored_dataset_args`)."""
    fn, kwargs = stored_dataset_args(node, where)
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as e:  # e.g. val_fraction="abc": a value of the wrong kind
        raise UserError(f"{where}: cannot build {fn.__name__} from the stored arguments ({e})") from None
