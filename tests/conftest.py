"""Shared fixtures: configs composed from the shipped conf/, runs written under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import distill.stages  # noqa: F401  (registers torchvision models in the ConfigStore)
from distill import config_dir

# Small, fast settings for runs in tests: tiny models, 2 threads, no progress bar.
FAST = ["trainer.threads=2", "trainer.progress=off"]
# the teacher in float32 PyTorch on every CPU (auto picks bf16 or onnxruntime by the hardware and a timing)
FLOAT32_TEACHER = ["trainer.teacher_precision=32", "trainer.teacher_backend=torch"]
ONE_EPOCH = ["trainer.epochs=1", *FAST]
DIGITS = ["dataset=digits", *FAST]


def write_image_folder(root: Path, images: int, seed: int) -> Path:
    """A realistic image folder (scripts/make_image_folder.py: photographs with a digit pasted on,
    non-square JPEGs of 256-500 px, train/val/test and their CSV lists) of ``images`` images."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_image_folder.py"
    spec = importlib.util.spec_from_file_location("make_image_folder", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(root, images, seed=seed, source="digits")
    return root


def cached_torchvision_weights(tmp_path: Path, monkeypatch, weights, seed: int):
    """A random network of ``weights``' architecture saved where torchvision finds ``weights`` offline
    (torch's hub cache under a ``TORCH_HOME`` in ``tmp_path``); returns the network."""
    import torch
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    torch.manual_seed(seed)
    net = torchvision.models.get_model(type(weights).__name__.removesuffix("_Weights").lower())
    torch.save(net.state_dict(), cached)
    return net


def outputs_root(tmp_path: Path) -> str:
    """The override that puts a test's runs under ``tmp_path/outputs``."""
    return f"paths.root={tmp_path / 'outputs'}"


def read_summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def read_metrics(run: Path) -> list[dict]:
    """A run's ``metrics.jsonl``, a dict per epoch."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def method_args(name: str, teacher: Path, model: str = "lenet5") -> list[str]:
    """The teacher overrides for ``distill=NAME`` from the teacher run ``teacher`` of ``model``: online
    peers train from scratch (no trained teacher); multi-teacher takes the same run as its second teacher."""
    if name in ("online", "mutual"):
        return [f"teacher={model}"]
    args = [f"teacher={model}", f"teacher.checkpoint={teacher}"]
    if name == "multi_teacher":
        args.append(f"distill.teachers=[{teacher}]")
    return args


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> Path:
    """A LeNet-5 teacher trained on digits for 4 epochs, trained once for the whole session and
    shared by the tests that only read it (copy it with :func:`copy_run` to change it)."""
    from distill import api

    root = tmp_path_factory.mktemp("digits_teacher")
    run = root / "teacher"
    overrides = ["teacher=lenet5", "dataset=digits", "trainer.epochs=4", "sched.warmup_epochs=0", *FAST]
    api.run("teacher", [*overrides, f"paths.root={root}", f"paths.output_dir={run}"])
    return run


def copy_run(run: Path, to: Path) -> Path:
    """A copy of a run folder, for a test that changes it."""
    import shutil

    return Path(shutil.copytree(run, to))


@pytest.fixture
def make_cfg(tmp_path: Path):
    """Composes a stage's config with overrides; runs go under tmp_path/outputs."""

    def _make(stage: str, overrides: list[str] = (), run_dir: Path | None = None):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name=stage, overrides=[f"paths.root={tmp_path / 'outputs'}", *overrides])
        cfg.paths.output_dir = str(run_dir or tmp_path / "outputs" / stage / "run")
        return cfg

    yield _make
    GlobalHydra.instance().clear()


def launch(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Runs ``python -m distill ARGS`` in a new process, as a user types it: for what is about the
    process boundary (signals, kills, torchrun, the README's commands, the exit of the interpreter)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "distill", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def run_cli(*args: str, cwd: Path, timeout: int | None = None) -> subprocess.CompletedProcess:
    """``distill ARGS`` through ``distill.cli.main`` in this process: the same parsing, checks, runs,
    sweeps and messages as the command, without a new interpreter's start-up (8 s of imports on 2
    cores). What is about the process itself goes through :func:`launch`. ``timeout`` is ignored
    (kept so a call reads like :func:`launch`)."""
    import contextlib
    import io

    from hydra.core.global_hydra import GlobalHydra

    from distill import cli

    out, err, code = io.StringIO(), io.StringIO(), 0
    old_cwd, old_argv, old_env = os.getcwd(), list(sys.argv), os.environ.get("HYDRA_FULL_ERROR")
    os.chdir(cwd)
    os.environ["HYDRA_FULL_ERROR"] = "0"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        if old_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = old_env
        GlobalHydra.instance().clear()
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().cfg = None  # as when the process ends: no run's Hydra settings linger
    return subprocess.CompletedProcess(["distill", *args], code, out.getvalue(), err.getvalue())


# --- small models and files for unit tests -------------------------------------------------------

# A ViT small enough to train and export in seconds: the same tokens, taps and graph as vit_tiny's
# default width (as a dict for build_model, as overrides for the CLI through small_vit_overrides).
SMALL_VIT = {"num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}


def small_vit_overrides(group: str) -> list[str]:
    """``SMALL_VIT`` as command-line overrides of ``group`` (``student`` or ``teacher``)."""
    return [f"{group}.kwargs.{k}={v}" for k, v in SMALL_VIT.items()]


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread is fastest, and does not stall when other work holds the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def vit_classifier(side: int, channels: int, **kwargs):
    """distill's vit_tiny for side x side images in a Classifier, with a head that does not start at zero."""
    from torch import nn

    from distill.models.registry import build_model

    model = build_model("vit_tiny", 10, channels, (side, side), (0.5,) * channels, (0.25,) * channels, kwargs=kwargs)
    nn.init.normal_(model.net.heads.head.weight, std=0.2)  # torchvision starts the head at zero: all logits 0
    return model


@pytest.fixture(scope="session")
def exported_vit(tmp_path_factory):
    """A small 28x28x1 vit_tiny in a Classifier, exported as ``distill export`` does, with its model.json."""
    import json

    import torch

    from distill.export.onnx import export_onnx

    torch.manual_seed(0)
    model = vit_classifier(28, 1, **SMALL_VIT).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(model, torch.rand(2, 1, 28, 28), path)
    meta = {"classes": [f"c{i}" for i in range(10)], "input": {"channels": 1, "height": 28, "width": 28}}
    path.with_name("model.json").write_text(json.dumps(meta))
    return model, path


def linear_onnx(path: Path, chw: tuple = (1, 2, 2), k: int = 2, batch: int | str = "batch"):
    """Writes a foreign ONNX graph, ``logits = flatten(x) @ W``, with the given batch and C, H, W
    dimensions (numbers or names of free ones); returns ``W``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = int(np.prod(chw)) if all(isinstance(d, int) for d in chw) else 12  # free C, H, W: fed 3x2x2 images
    w = np.random.default_rng(0).standard_normal((size, k)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *chw])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, k])
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "linear", [x], [y], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return w
