"""Files are data: a crafted weights file or cache entry never chooses code to run.

Each case writes a file the way an attacker would (checksums recomputed, so they pass as intact),
feeds it to a command as a user would, and asserts the refusal is one line with exit code 2 and
that the marker file the payload would write never appears.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from distill.data.embedded import digits
from distill.engine.checkpoint import save_weights
from distill.models.registry import build_model
from distill.models.spec import ModelSpec
from tests.conftest import run_cli


class _Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _writes_file(marker: Path) -> dict:
    """A Hydra node that, instantiated, writes ``marker`` (pathlib.Path(marker).write_text("ran"))."""
    return {
        "_target_": "pathlib.Path.write_text",
        "self": {"_target_": "pathlib.Path", "_args_": [str(marker)]},
        "data": "ran",
    }


def _unpickles(marker: Path, where: Path) -> dict:
    """A Hydra node that, instantiated, loads a pickle that creates ``marker``."""
    npy = where / "payload.npy"
    np.save(npy, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    return {"_target_": "numpy.load", "file": str(npy), "allow_pickle": True}


def _digits_spec(**changes) -> ModelSpec:
    data = digits(augment="none")
    spec = ModelSpec("mlp", 10, 1, list(data.image_size), list(data.mean), list(data.std), list(data.classes))
    for key, value in changes.items():
        setattr(spec, key, value)
    return spec


def _weights(path: Path, config: dict, spec: ModelSpec | None = None) -> Path:
    spec = spec or _digits_spec()
    model = build_model("mlp", 10, 1, (8, 8), tuple(spec.mean), tuple(spec.std))
    return save_weights(path, model, spec, config=config)  # the checksum is recomputed: it proves nothing


def _one_line(result, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(params=["writes_file", "unpickles"])
def payload(request, tmp_path):
    marker = tmp_path / f"marker_{request.param}"
    node = _writes_file(marker) if request.param == "writes_file" else _unpickles(marker, tmp_path)
    return node, marker


@pytest.mark.parametrize("stage", ["eval", "export", "compare"])
def test_a_stored_dataset_config_never_calls_what_it_names(stage, payload, tmp_path):
    node, marker = payload
    weights = _weights(tmp_path / "crafted.safetensors", {"dataset": node})
    args = {
        "eval": ["eval", f"run={weights}"],
        "export": ["export", f"run={weights}", f"output={tmp_path / 'm.onnx'}"],
        "compare": ["compare", f"teacher.checkpoint={weights}", "compress=[]"],
    }[stage]
    result = run_cli(*args, f"paths.root={tmp_path / 'outputs'}", cwd=tmp_path)
    _one_line(result, str(weights), "config.dataset._target_=")
    assert not marker.exists()


def test_the_same_file_with_distills_own_dataset_works(tmp_path):
    """The control: the refusal above is about the target, not about crafted files in general."""
    weights = _weights(tmp_path / "fine.safetensors", {"dataset": {"_target_": "distill.data.embedded.digits"}})
    result = run_cli("eval", f"run={weights}", f"paths.root={tmp_path / 'outputs'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "eval.json").read_text())["images"] > 0  # beside a weights file of no run


@pytest.mark.parametrize(
    "dataset, needle",
    [
        ({"_target_": "distill.data.embedded.digits", "val_fraction": {"_target_": "os.getcwd"}}, "plain value"),
        ({"_target_": "distill.data.embedded.digits", "bogus": 1}, "does not take"),
        ("digits", "not a dataset config"),
    ],
)
def test_stored_dataset_arguments_are_plain_values_the_builder_takes(dataset, needle, tmp_path):
    weights = _weights(tmp_path / "odd.safetensors", {"dataset": dataset})
    result = run_cli("eval", f"run={weights}", f"paths.root={tmp_path / 'outputs'}", cwd=tmp_path)
    _one_line(result, str(weights), needle)


def test_a_stored_download_flag_never_downloads(tmp_path):
    from distill.data.stored import stored_dataset_args

    node = {"_target_": "distill.data.torchvision_sets.cifar10", "root": str(tmp_path), "download": True}
    _, kwargs = stored_dataset_args(node, "FILE: config.dataset")
    assert kwargs["download"] is False


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"name": "os"}, "model.name='os' is not a model distill knows"),
        # a dotted path is a user's own network: imported only when the user names it again
        ({"name": "os.system"}, "was built by os.system, code outside distill, which a file alone cannot choose"),
        # a Hugging Face model is rebuilt from the config the file carries, never fetched by name
        ({"name": "hf/someone/repo"}, "kwargs.config is not JSON"),
        ({"name": "hf/someone/repo", "kwargs": {"config": '{"auto_map": {}}'}}, "kwargs.config has no model_type"),
        # transformers' timm_wrapper names a timm model (hf-hub:, local-dir:) and timm's loading arguments
        (
            {"name": "hf/someone/repo", "kwargs": {"config": '{"model_type": "timm_wrapper", "architecture": "x"}'}},
            "is a timm_wrapper config",
        ),
        ({"kwargs": {"bogus": 1}}, "bad model arguments for mlp"),
        ({"kwargs": {"hidden": [{"_target_": "os.getcwd"}]}}, "model.kwargs="),
        ({"num_classes": True}, "model.num_classes=True"),
        ({"image_size": [8]}, "model.image_size=[8]"),
        ({"name": "timm/hf-hub:someone/repo"}, "model.name='timm/hf-hub:someone/repo' is not a model"),
        ({"name": "timm/local-dir:/tmp"}, "model.name='timm/local-dir:/tmp' is not a model"),
    ],
)
def test_a_stored_model_description_is_data(changes, needle, tmp_path):
    """``teacher.checkpoint=`` and ``eval``: the model a weights file describes is looked up in fixed tables."""
    weights = _weights(tmp_path / "model.safetensors", {"dataset": {"_target_": "distill.data.embedded.digits"}})
    spec = _digits_spec(**changes)
    from safetensors.torch import load_file

    from distill.engine.checkpoint import FORMAT, FORMAT_VERSION, _digest

    tensors = load_file(weights)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": json.dumps(spec.__dict__), "config": "{}"}
    meta["sha256"] = _digest(tensors, meta)
    from safetensors.torch import save_file

    save_file(tensors, weights, metadata=meta)
    for args in (
        ["eval", f"run={weights}"],
        ["train", "dataset=digits", "student=mlp", "teacher=mlp", f"teacher.checkpoint={weights}", "trainer.epochs=1"],
    ):
        result = run_cli(*args, f"paths.root={tmp_path / 'outputs'}", cwd=tmp_path)
        _one_line(result, str(weights), needle)
    assert not (tmp_path / "outputs" / "train").exists(), "nothing was started"


def test_a_timm_model_description_cannot_load_a_checkpoint_of_its_choosing(tmp_path):
    """``checkpoint_path`` would make timm torch.load a file: kwargs cannot set it."""
    pytest.importorskip("timm")  # a dev dependency: installed wherever the suite runs
    marker = tmp_path / "marker_timm"
    evil = tmp_path / "evil.pth"
    torch.save({"x": _Payload(marker)}, evil)
    from distill.errors import UserError
    from distill.models.spec import build_from_spec

    for kwargs in (
        {"checkpoint_path": str(evil)},
        {"pretrained": True},
        {"pretrained_cfg_overlay": {"file": str(evil)}},
    ):
        spec = _digits_spec(name="timm/resnet10t", kwargs=kwargs)
        with pytest.raises(UserError, match="bad arguments for timm model resnet10t"):
            build_from_spec(spec)
    assert not marker.exists()


@pytest.mark.parametrize(
    "override",
    [
        "optim._target_=pathlib.Path.touch",
        "+hydra.callbacks.x._target_=os.getcwd",
        "distill.method={_target_: os.system}",
        "hydra.job.env_set.LD_PRELOAD=/tmp/x.so",
        """distill.method='${oc.decode:"{_target_: builtins.print, _args_: [PWNED]}"}'""",
        "distill.method=${oc.create:_target_\\: builtins.print}",
    ],
)
def test_resume_never_replays_code_from_a_run_folder(override, tmp_path):
    """``resume=RUN`` replays the run's stored overrides: a folder someone hands over cannot name code."""
    import yaml

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "state.pt").write_bytes(b"")
    (run / "config.yaml").write_text(yaml.safe_dump({"stage": "train"}))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["student=mlp", override]))
    result = run_cli("train", f"resume={run}", cwd=tmp_path)
    _one_line(result, "overrides.yaml", "replays plain config values only")


def _crafted_cache_entry(root: Path, node: dict, tmp_path: Path) -> Path:
    """A cache entry as a teammate could drop into a shared cache: built for real, then its key's
    dataset replaced by ``node`` and the folder renamed to the new key's digest (anyone can compute it)."""
    from dataclasses import asdict

    from distill.engine.cache import CacheKey, build_entry, file_digest, tensor_digest
    from distill.engine.checkpoint import load_model

    weights = _weights(tmp_path / "teacher" / "checkpoints" / "best.safetensors", {})
    teacher = load_model(weights)[0]
    data = digits(augment="none")
    key = CacheKey(
        teacher=file_digest(weights), images=tensor_digest(data.train_x),
        dataset={"_target_": "distill.data.embedded.digits", "augment": "none"}, augment="none", views=1, seed=0,
    )  # fmt: skip
    entry = build_entry(
        root, key, teacher, [], data.train_x, device=torch.device("cpu"), meta={"teacher_path": str(weights)}
    )
    key.dataset = node
    meta = json.loads((entry.path / "meta.json").read_text())
    meta["key"] = asdict(key)
    (entry.path / "meta.json").write_text(json.dumps(meta))
    crafted = entry.path.rename(root / key.digest())
    return crafted


def test_a_cache_entry_never_calls_what_its_key_names(payload, tmp_path):
    node, marker = payload
    root = tmp_path / "cache"
    crafted = _crafted_cache_entry(root, node, tmp_path)
    listed = run_cli("cache", "ls", f"dir={root}", cwd=tmp_path)
    assert listed.returncode == 0 and crafted.name[:8] in listed.stdout, listed.stdout + listed.stderr
    result = run_cli("cache", "verify", f"dir={root}", cwd=tmp_path)
    _one_line(result)
    assert "key.dataset._target_=" in result.stdout + result.stderr, result.stdout + result.stderr
    assert not marker.exists()
