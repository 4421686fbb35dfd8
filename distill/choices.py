"""The values each choice key takes, and the checks of numbers and choices that need no torch.

The modules that act on these keys import their tuples from here, so the command line can refuse a
typo'd value (``trainer.device=cpuu``) before it imports torch (:func:`check_values`, run by
``distill.cli`` first); the stages' full checks (``distill.config.checks``) use the same tuples.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill.errors import closest

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
DEVICES = ("auto", "cpu", "cuda")
PROGRESS = ("auto", "on", "off")
BACKENDS = ("auto", "torch", "onnxruntime")  # trainer.teacher_backend
AUGMENTS = ("none", "shift", "crop_flip")  # dataset.augment
MIXES = ("none", "mixup", "cutmix")  # trainer.mix
SELECTS = ("one_se", "best", "last")  # trainer.select: which epoch's weights are the run's (distill.engine.fit)
LOSS_KINDS = ("kl", "mse", "soft_ce")  # distill.loss (distill.losses.kd.SOFT_TERMS)
POLICIES = ("none", "randaugment", "trivialaugment")  # dataset.policy of streamed folders
# dataset.on_bad_image and dataset.in_memory of the image-file datasets (checked by the precheck and the loaders)
ON_BAD_IMAGE = ("error", "skip")
IN_MEMORY = ("auto", "true", "false")

# key -> the values it takes, checked where the key is in the config
CHOICES: dict[str, tuple[str, ...]] = {
    "trainer.device": DEVICES,
    "trainer.precision": PRECISIONS,
    "trainer.teacher_precision": ("auto", *PRECISIONS),
    "trainer.teacher_backend": BACKENDS,
    "trainer.progress": PROGRESS,
    "trainer.mix": MIXES,
    "trainer.select": SELECTS,
    "dataset.augment": AUGMENTS,
    "dataset.on_bad_image": ON_BAD_IMAGE,
    "dataset.policy": POLICIES,
    "distill.loss": LOSS_KINDS,
}
# key -> (lowest, highest, lowest excluded, whole number)
NUMBERS: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "seed": (0, None, False, True),
    "trainer.epochs": (0, None, False, True),
    "trainer.batch_size": (1, None, False, True),
    "trainer.eval_batch_size": (1, None, False, True),
    "trainer.num_workers": (0, None, False, True),
    "trainer.bn_recalibrate_batches": (1, None, False, True),
    "trainer.save_every_steps": (0, None, False, True),
    "trainer.grad_clip": (0, None, True, False),
    "trainer.log_every_s": (0, None, False, False),
    "trainer.threads": (1, None, False, True),
    "trainer.mix_alpha": (0, None, True, False),
    "dataset.val_fraction": (0, 0.9, True, False),
    "dataset.memory_gb": (0, None, False, False),
}


def check_number(
    cfg: Any,
    key: str,
    errors: list[str],
    lo: float | None = None,
    hi: float | None = None,
    integer: bool = False,
    lo_open: bool = False,
) -> None:
    """Checks that ``key`` is a number in range, appending a readable problem to ``errors``."""
    value = OmegaConf.select(cfg, key)
    kind = "a whole number" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):
        errors.append(f"{key} must be {kind}, got {value!r}")
        return
    if lo is not None and (value <= lo if lo_open else value < lo):
        errors.append(f"{key} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        errors.append(f"{key} must be <= {hi}, got {value}")


def check_choice(cfg: Any, key: str, choices: tuple[str, ...] | list[str], errors: list[str]) -> None:
    value = OmegaConf.select(cfg, key)
    if str(value) not in choices:
        errors.append(f"{key}={value!r} is not one of {', '.join(choices)}{closest(str(value), choices)}")


def missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Required values (``???``) left unset, as dotted keys."""
    found = []
    for key in cfg.keys() if isinstance(cfg, DictConfig) else []:
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            found.append(full)
        elif isinstance(cfg._get_node(key), DictConfig) and key != "hydra":
            found.extend(missing_keys(cfg._get_node(key), full + "."))
    return found


def check_in_memory(cfg: Any, errors: list[str]) -> None:
    """dataset.in_memory: a bool or one of the words of :data:`IN_MEMORY` (where the dataset has it)."""
    in_memory = OmegaConf.select(cfg, "dataset.in_memory")
    if in_memory is not None and str(in_memory).lower() not in IN_MEMORY:
        errors.append(f"dataset.in_memory must be auto, true or false, got {in_memory!r}")


def check_values(cfg: Any) -> list[str]:
    """The problems of the choice and number keys ``cfg`` has (a key it lacks, or sets to null, is
    not checked here): the quick first pass of the command line, before anything imports torch."""
    errors: list[str] = []
    for key, choices in CHOICES.items():
        if OmegaConf.select(cfg, key) is not None:
            check_choice(cfg, key, choices, errors)
    check_in_memory(cfg, errors)
    for key, (lo, hi, lo_open, integer) in NUMBERS.items():
        if OmegaConf.select(cfg, key) is not None:
            check_number(cfg, key, errors, lo=lo, hi=hi, integer=integer, lo_open=lo_open)
    return errors
