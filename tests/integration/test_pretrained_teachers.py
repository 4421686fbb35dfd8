"""Pretrained teachers used as they are when they already classify the dataset's classes (a torchvision
ImageNet checkpoint on a folder of ImageNet classes; a Hugging Face classifier whose labels are the
classes), fine-tuned first when they do not; a Hugging Face model rebuilt from its weights file alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from distill import api
from distill.engine.checkpoint import load_model
from tests.conftest import FAST, cached_torchvision_weights, read_summary

WNIDS = ["n01440764", "n01443537", "n01484850"]  # tench, goldfish, great white shark: ImageNet's first three
ONE = ["trainer.epochs=1", "student=lenet5", "trainer.teacher_backend=torch", "trainer.teacher_precision=32", *FAST]
# small grey 8-px images, classes "0".."9"
SMALL = ["dataset=synthetic", "dataset.n_train=160", "dataset.n_eval=40", "dataset.size=8", "dataset.channels=1"]


def _wnid_folder(root: Path) -> Path:
    """An ImageNet-style folder: class folders named by WordNet id, 6 small JPEGs each per split."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for wnid in WNIDS:
            (root / split / wnid).mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / wnid / f"{i}.jpg")
    return root


def _teacher_summary(student_run: Path) -> dict:
    return read_summary(Path(read_summary(student_run)["teacher_weights"]).parent.parent)


def test_an_imagenet_checkpoint_teaches_a_folder_of_imagenet_classes_as_it_is(tmp_path, monkeypatch):
    import torchvision

    pretrained = cached_torchvision_weights(tmp_path, monkeypatch, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 3)
    folder = _wnid_folder(tmp_path / "photos")
    run = tmp_path / "train"
    data = ["dataset=imagefolder", f"dataset.root={folder}", "dataset.image_size=32"]
    teacher = ["teacher=resnet18", "teacher.weights=IMAGENET1K_V1"]
    api.run("train", [*teacher, *data, *ONE, f"paths.root={tmp_path / 'out'}", f"paths.output_dir={run}"])

    kept = _teacher_summary(run)
    assert kept["epochs"] == 0, "kept as it is, not fine-tuned"
    model = load_model(read_summary(run)["teacher_weights"])[0]
    # the head is the checkpoint's rows for the folder's classes (ImageNet indices 0, 1, 2), untouched
    assert torch.equal(model.net.fc.weight, pretrained.fc.weight[:3])
    assert torch.equal(model.net.conv1.weight, pretrained.conv1.weight)


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory) -> dict[str, Path]:
    """Two tiny random ViT classifiers saved with save_pretrained: labelled with digits' classes, and not."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    folders = {}
    kinds = {
        "digits": [str(i) for i in range(10)],
        "animals": ["cat", "dog", "eel"],
        "shuffled": [str(i) for i in (3, 1, 4, 0, 5, 9, 2, 6, 8, 7)],  # the classes, in another order
        "superset": ["cat", *[str(i) for i in range(9, -1, -1)], "dog"],  # the classes among others
        "others": [f"class {i}" for i in range(10)],  # as many outputs, other classes
    }
    for kind, labels in kinds.items():
        config = transformers.ViTConfig(
            image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)},
        )  # fmt: skip
        torch.manual_seed(0)
        transformers.AutoModelForImageClassification.from_config(config).save_pretrained(root / kind)
        folders[kind] = root / kind
    return folders


def test_a_hugging_face_classifier_labelled_with_the_classes_teaches_as_it_is(hf_folders, tmp_path):
    from safetensors.torch import load_file

    run = tmp_path / "train"
    teacher = ["teacher=hf", f"teacher.name={hf_folders['digits']}"]
    summary = api.run("train", [*teacher, *SMALL, *ONE, f"paths.root={tmp_path / 'out'}", f"paths.output_dir={run}"])
    assert summary["teacher"] == f"hf/{hf_folders['digits']}"
    assert _teacher_summary(run)["epochs"] == 0
    saved = load_file(hf_folders["digits"] / "model.safetensors")
    teacher_file = read_summary(run)["teacher_weights"]
    shutil.rmtree(hf_folders["digits"])  # rebuilt from the weights file alone: its config travels inside it
    model = load_model(teacher_file)[0]
    assert torch.equal(model.net.classifier.weight, saved["classifier.weight"])
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_a_hugging_face_classifier_with_other_labels_is_fine_tuned_first(hf_folders, tmp_path):
    run = tmp_path / "train"
    teacher = ["teacher=hf", f"teacher.name={hf_folders['animals']}"]
    api.run("train", [*teacher, *SMALL, *ONE, f"paths.root={tmp_path / 'out'}", f"paths.output_dir={run}"])
    tuned = _teacher_summary(run)
    assert tuned["epochs"] == 1 and tuned["model"] == f"hf/{hf_folders['animals']}"
    assert load_model(read_summary(run)["teacher_weights"])[0].net.classifier.out_features == 10


def test_a_missing_hugging_face_model_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    import huggingface_hub.constants

    from distill.errors import UserError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: set for this process
    with pytest.raises(UserError, match=r"cannot read the Hugging Face model 'nobody/nothing'.*hf download"):
        api.run("train", ["teacher=hf", "teacher.name=nobody/nothing", *SMALL, *ONE, f"paths.root={tmp_path}"])


@pytest.mark.parametrize("kind", ["shuffled", "superset", "others"])
def test_a_hugging_face_head_keeps_exactly_its_outputs_for_the_datasets_classes(hf_folders, kind):
    """Rows of the checkpoint's head for the dataset's classes, in the classes' order; a fresh head when
    its labels are other classes, even with as many outputs."""
    import transformers
    from safetensors.torch import load_file

    from distill.models.hf_models import pretrained_labels, resolve
    from distill.models.registry import build_model

    classes = [str(i) for i in range(10)]
    name = str(hf_folders[kind])
    model = build_model(
        f"hf/{name}", 10, 1, (8, 8), (0.5,), (0.25,), "pretrained", {"config": resolve(name, classes)}, classes
    )
    head = load_file(hf_folders[kind] / "model.safetensors")["classifier.weight"]
    labels = pretrained_labels(name)
    if kind == "others":
        assert not any(torch.equal(model.net.classifier.weight[i], head[i]) for i in range(10))
    else:
        assert torch.equal(model.net.classifier.weight, head[[labels.index(c) for c in classes]])
    assert transformers is not None and model.net.config.id2label[0] == "0"


def test_a_config_from_a_file_cannot_choose_an_attention_kernel_or_a_pretrained_backbone():
    """Entries of a stored config that would fetch a kernel or weights are dropped (or turned off)."""
    pytest.importorskip("transformers")
    import json

    from distill.models.hf_models import _config

    stored = {
        "model_type": "vit", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 32, "image_size": 8, "patch_size": 4,
        "attn_implementation": "kernels-community/flash-attn", "_attn_implementation": "kernels-community/flash-attn",
        "use_pretrained_backbone": True, "quantization_config": {"quant_method": "bitsandbytes"},
    }  # fmt: skip
    config = _config(json.dumps(stored))
    assert "kernels" not in str(getattr(config, "_attn_implementation", None))
    assert config.use_pretrained_backbone is False
    assert getattr(config, "quantization_config", None) is None
