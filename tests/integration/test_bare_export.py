"""A student usable anywhere: export's model.safetensors loads into a fresh torchvision or timm network
as it is and, fed as its metadata says, gives the ONNX file's logits; distill.load as the README shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distill import api
from tests.conftest import ONE_EPOCH

README = Path(__file__).resolve().parents[2] / "README.md"


def _trained(tmp_path: Path, *model: str) -> Path:
    run = tmp_path / "run"
    # small grey images: the bare network is fed repeated channels at the size it was resized to
    data = ["dataset=synthetic", "dataset.n_train=128", "dataset.n_eval=64", "dataset.size=16", "dataset.channels=1"]
    api.run("teacher", [*model, *data, *ONE_EPOCH, f"paths.output_dir={run}"])
    api.run("export", [f"run={run}"])
    return run


def _same_as_onnx(run: Path, net: torch.nn.Module) -> None:
    """``net`` (the bare file loaded into its library's model) fed as the metadata says vs the ONNX file."""
    import onnxruntime as ort
    from safetensors import safe_open
    from safetensors.torch import load_file

    from distill.engine.checkpoint import load_model
    from distill.stages.eval import load_split

    net.load_state_dict(load_file(run / "model.safetensors"))  # as it is: no key renamed, none left over
    net.eval()
    with safe_open(run / "model.safetensors", "pt") as f:
        spec = json.loads(f.metadata()["input"])
    _, _, config, weights = load_model(run)
    x = load_split(config, "test", weights)[0]
    images = x[:16].float() / 255
    mean, std = (torch.tensor(spec["normalize"][k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    fed = ((images - mean) / std).expand(-1, spec["channels"], -1, -1)
    fed = F.interpolate(fed, size=(spec["height"], spec["width"]), mode="bilinear", align_corners=False)
    session = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(net(fed).numpy(), session.run(None, {"images": images.numpy()})[0], atol=1e-4)


def test_the_bare_network_loads_into_a_fresh_torchvision_model_with_the_onnx_files_logits(tmp_path):
    import torchvision

    run = _trained(tmp_path, "teacher=mobilenet_v3_small")
    meta = json.loads((run / "model.json").read_text())["bare_network"]
    assert meta["library"] == "torchvision"
    assert meta["build"] == "torchvision.models.get_model('mobilenet_v3_small', num_classes=10)"
    _same_as_onnx(run, torchvision.models.get_model("mobilenet_v3_small", num_classes=10))

    # the README's example, as written but for the run folder it names
    code = re.search(r"```python\n(import torch, distill\nstudent = distill\.load.*?)```", README.read_text(), re.S)
    source = re.sub(r'distill\.load\("[^"]+"\)', f"distill.load({str(run)!r})", code.group(1))
    printed = []
    exec(compile(source, "README.md", "exec"), {"print": printed.append})
    assert len(printed[0]) == 4 and set(printed[0]) <= set(json.loads(meta["classes"]))


def test_the_bare_network_loads_into_a_fresh_timm_model_with_the_onnx_files_logits(tmp_path):
    timm = pytest.importorskip("timm")
    run = _trained(tmp_path, "teacher=timm", "teacher.name=resnet18")
    meta = json.loads((run / "model.json").read_text())["bare_network"]
    assert meta["library"] == "timm" and meta["build"].startswith("timm.create_model('resnet18', num_classes=10")
    _same_as_onnx(run, timm.create_model("resnet18", num_classes=10, in_chans=1))


def test_pt2_is_the_student_with_its_preprocessing_for_any_batch_size(tmp_path):
    """``pt2=true``: torch.export's program of the model (normalisation, channel repeat, resize inside)."""
    from distill.engine.checkpoint import load_model

    run = tmp_path / "run"
    data = ["dataset=synthetic", "dataset.n_train=64", "dataset.n_eval=32", "dataset.size=16", "dataset.channels=1"]
    api.run("teacher", ["teacher=lenet5", *data, *ONE_EPOCH, f"paths.output_dir={run}"])  # resized to 32 inside
    result = api.run("export", [f"run={run}", "pt2=true", "check_images=16"])
    program = torch.export.load(result["pt2"]).module()
    model = load_model(run)[0]
    images = torch.rand(5, 1, 16, 16)  # a batch size it was not traced with
    with torch.no_grad():
        torch.testing.assert_close(program(images), model(images), atol=1e-5, rtol=1e-5)
    assert json.loads((run / "model.json").read_text())["pt2"]["max_abs_diff"] <= 1e-4
