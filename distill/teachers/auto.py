"""The teacher ``distill train`` finds or trains for itself when no ``teacher.checkpoint`` is given.

The teacher is trained with the ``teacher`` stage's own recipe (``conf/teacher.yaml``: epochs,
optimizer, schedule) and this run's device settings; ``trainer.epochs`` given on the command line
(or to ``api.run``) sets its epochs too, so a smoke run or a test stays short. A finished teacher
run under ``paths.root`` is reused only when it was trained with that same recipe on the same data;
the run reused and how it was trained are logged. Runs that need the same teacher at once take
turns on a lock: one trains, the others wait and reuse it. A teacher run that was interrupted
(Ctrl-C, SIGTERM, a killed job) is continued by the next run that needs it, from its last state.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from distill.config.adapters import model_name, model_weights, plain_config
from distill.config.entry import compose_stage, given_overrides
from distill.engine.runs import RunDir, finished_runs, flatten, new_stamp
from distill.errors import UserError
from distill.teachers.supervised import train_teacher

log = logging.getLogger("distill")

# This run's settings the teacher is trained with: how, not what (they do not change its recipe).
DEVICE_KEYS = (
    "device", "precision", "threads", "progress", "log_every_s", "num_workers", "channels_last", "teacher_precision"
)  # fmt: skip
# What a teacher run must share with the requested one to be reused: its model, data and recipe.
RECIPE = (
    "teacher.", "dataset.", "optim.", "sched.",
    "trainer.epochs", "trainer.batch_size", "trainer.mix", "trainer.grad_clip",
)  # fmt: skip
_NOT_RECIPE = ("dataset.download", "teacher.checkpoint")
# Recipe keys that came later, with the value a stored config without them was trained with.
_ADDED = {"trainer.grad_clip": None}


def teacher_config(cfg: DictConfig, run_dir: Path | None = None, classes: list[str] | None = None) -> DictConfig:
    """The ``teacher`` stage's config for ``cfg.teacher`` on ``cfg.dataset``, with this run's seed,
    device settings and ``paths.root``, writing into ``run_dir`` (default: a new dated folder).
    A pretrained teacher whose classes are the dataset's ``classes`` is kept as it is (0 epochs)."""
    tcfg = compose_stage("teacher", [f"seed={cfg.seed}"])
    tcfg.teacher = OmegaConf.to_container(cfg.teacher, resolve=True)
    tcfg.dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    tcfg.paths.root = str(cfg.paths.root)
    stamp = new_stamp()
    tcfg.paths.output_dir = str(run_dir or Path(str(cfg.paths.root)) / "teacher" / stamp)
    for key in DEVICE_KEYS:
        tcfg.trainer[key] = cfg.trainer[key]
    # trainer.epochs given for this run (a smoke run, a test) applies to its teacher too; set in a
    # config or an experiment, it is the student's and the teacher keeps its recipe's
    if any(o.lstrip("+").split("=", 1)[0] == "trainer.epochs" for o in given_overrides()):
        tcfg.trainer.epochs = cfg.trainer.epochs
    if classes is not None and pretrained_for(cfg.teacher, classes):
        tcfg.trainer.epochs = 0
    return tcfg


def pretrained_for(node: DictConfig, classes: list[str]) -> bool:
    """Whether a teacher's pretrained weights already classify the dataset's classes: a torchvision
    ImageNet checkpoint for a folder of ImageNet classes (named by WordNet id, as ImageNet's own folders
    are, or by category; a subset keeps those classes' outputs), or a Hugging Face classifier whose
    labels name every class (the same subset rule). Such a teacher is used as it is."""
    weights = model_weights(node)
    if weights is None or node.get("_target_") is not None:
        return False
    if node.get("source") == "hf":
        from distill.models.hf_models import covers, pretrained_labels

        return covers(pretrained_labels(str(node.name)), classes)
    if node.get("source") is not None:  # timm: fine-tuned (its checkpoints carry no class names)
        return False
    from distill.models.registry import pretrained_rows, weights_categories

    return pretrained_rows(weights_categories(str(node.name), str(weights)), classes) is not None


def recipe(config: dict[str, Any]) -> dict[str, Any]:
    """The keys of a (flattened) teacher config that decide what teacher comes out."""
    flat = {**_ADDED, **flatten(config)}
    return {k: v for k, v in flat.items() if k.startswith(RECIPE) and not k.startswith(_NOT_RECIPE)}


def _read_config(run_dir: Path) -> dict[str, Any] | None:
    try:
        config = yaml.safe_load(RunDir(run_dir).config.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return config if isinstance(config, dict) and config.get("stage") == "teacher" else None


def reusable(root: Path, want: dict[str, Any]) -> list[tuple[Path, dict]]:
    """Finished teacher runs under ``root`` trained with recipe ``want``, newest first."""
    found = []
    for run_dir, summary in finished_runs(root, "teacher"):
        config = _read_config(run_dir)
        if config is not None and recipe(config) == want:
            found.append((run_dir, summary))
    return found


def reusable_for(cfg: DictConfig, classes: list[str] | None = None) -> list[tuple[Path, dict]]:
    """Finished teacher runs that ``cfg``'s automatic teacher may reuse, newest first."""
    return reusable(Path(str(cfg.paths.root)), recipe(plain_config(teacher_config(cfg, classes=classes))))


def interrupted(root: Path, want: dict[str, Any], seed: int) -> Path | None:
    """The newest teacher run of recipe ``want`` and ``seed`` that stopped with its state saved and no
    result (interrupted or killed, not failed), which can be continued."""
    found = []
    for state in Path(root).glob("teacher/**/checkpoints/state.pt"):
        run_dir = state.parent.parent
        if RunDir(run_dir).finished or RunDir(run_dir).failed.exists():
            continue
        config = _read_config(run_dir)
        if config is not None and config.get("seed") == seed and recipe(config) == want:
            found.append((state.stat().st_mtime, run_dir))
    return max(found)[1] if found else None


@contextlib.contextmanager
def recipe_lock(root: Path, want: dict[str, Any]) -> Iterator[None]:
    """Held while a teacher of recipe ``want`` is looked for or trained: other runs needing the same
    teacher wait here instead of training a second one. The lock goes with the process holding it."""
    digest = hashlib.sha256(json.dumps(want, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(root) / "teacher" / f".{digest}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("another run is training this teacher (lock %s): waiting for it to finish", path)
            t0 = time.perf_counter()
            fcntl.flock(f, fcntl.LOCK_EX)
            log.info("the other run finished its teacher after %.0f s of waiting", time.perf_counter() - t0)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def describe_run(run_dir: Path, summary: dict) -> str:
    config = _read_config(run_dir) or {}
    optim = config.get("optim", {})
    return (
        f"{run_dir} ({summary.get('model')}, {summary.get('epochs')} epochs, "
        f"{str(optim.get('_target_', '?')).rsplit('.', 1)[-1]} lr {optim.get('lr')}, seed {summary.get('seed')}, "
        f"test acc {summary.get('test_acc')})"
    )


def train(cfg: DictConfig, run_dir: Path) -> Path:
    """Trains the teacher ``cfg`` asks for in ``run_dir`` (a chain's first step), reusing nothing."""
    train_teacher(teacher_config(cfg, run_dir))
    return run_dir


def run_folder(cfg: DictConfig, may_train: bool = True, classes: list[str] | None = None) -> Path:
    """The run folder of the teacher ``cfg`` asks for; when ``may_train`` is False (under torchrun,
    where the ranks cannot train one teacher together) only a finished run is taken."""
    if may_train:
        return find_or_train(cfg, classes)
    runs = reusable_for(cfg, classes)
    if not runs:
        raise UserError(
            f"no finished teacher run of {model_name(cfg.teacher)} under {cfg.paths.root}/: under torchrun train it "
            "first (torchrun ... -m distill teacher ...) or give teacher.checkpoint"
        )
    return runs[0][0]


def find_or_train(cfg: DictConfig, classes: list[str] | None = None) -> Path:
    """The run folder of the teacher ``cfg`` asks for: reused, continued or trained now (``classes``:
    the dataset's, to keep a pretrained teacher that already classifies them as it is)."""
    root = Path(str(cfg.paths.root))
    tcfg = teacher_config(cfg, classes=classes)
    want = recipe(plain_config(tcfg))
    with recipe_lock(root, want):
        runs = reusable(root, want)
        if runs:
            log.info("teacher: reusing %s", describe_run(*runs[0]))
            return runs[0][0]
        stopped = interrupted(root, want, int(cfg.seed))
        if stopped is not None:
            log.warning("teacher: continuing the interrupted teacher run %s from its saved state", stopped)
            tcfg.paths.output_dir = str(stopped)
            tcfg.resume = str(stopped)
        else:
            log.warning(
                "no finished teacher run of %s on %s with the teacher recipe under %s/: training it first "
                "(later runs reuse it)",
                model_name(cfg.teacher),
                str(cfg.dataset.get("_target_", "?")).rsplit(".", 1)[-1],
                root,
            )
        train_teacher(tcfg)
        return Path(str(tcfg.paths.output_dir))
