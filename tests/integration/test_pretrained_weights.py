"""``teacher.weights``: torchvision weights by name, found offline in torch's hub cache."""

from __future__ import annotations

import torch

from distill import api
from distill.engine.checkpoint import load_model
from tests.conftest import DIGITS, cached_torchvision_weights, outputs_root


def test_teacher_weights_fine_tunes_from_the_file_in_torchs_hub_cache(tmp_path, monkeypatch):
    """``teacher.weights=IMAGENET1K_V1``: torchvision's file, found offline in torch's hub cache."""
    import torchvision

    pretrained = cached_torchvision_weights(tmp_path, monkeypatch, torchvision.models.ResNet18_Weights.IMAGENET1K_V1, 5)
    out = tmp_path / "run"
    args = ["teacher=resnet18", "teacher.weights=IMAGENET1K_V1", *DIGITS, "trainer.epochs=1", "optim.lr=1e-3"]
    summary = api.run("teacher", [*args, outputs_root(tmp_path), f"paths.output_dir={out}"])

    model = load_model(out)[0]
    tuned, start = model.net.conv1.weight.detach().flatten(), pretrained.conv1.weight.flatten()
    assert torch.cosine_similarity(tuned, start, dim=0) > 0.9, "training started from the file's weights"
    assert not torch.equal(tuned, start), "and changed them"
    assert model.net.fc.out_features == 10 and summary["epochs"] == 1
