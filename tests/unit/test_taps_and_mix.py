"""Feature taps on unmodified models, connectors built from a first batch, mixing, KD options."""

import pytest
import torch
import torch.nn.functional as F

from distill.data.augment import mix_batch
from distill.engine.taps import HEAD, Taps, attach_taps, auto_layers, resolve_layers, trace_layers
from distill.errors import UserError
from distill.losses.fitnet import FitNet
from distill.losses.kd import KDLoss
from distill.models.registry import build_model


def _model(name: str, side: int = 28, channels: int = 1):
    return build_model(name, 10, channels, (side, side), (0.5,) * channels, (0.25,) * channels)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet18", ["net.layer1", "net.layer2", "net.layer3", "net.layer4"]),
        ("lenet5", ["net.features.0", "net.features.3"]),
        ("mlp", ["net.features.1", "net.features.3"]),
        ("resnet8x4", ["net.layer1", "net.layer2", "net.layer3"]),
    ],
)
def test_auto_taps_are_the_last_block_of_each_stage(name, expected):
    model = _model(name)
    assert auto_layers(trace_layers(model, torch.rand(2, 1, 28, 28))) == expected


def test_auto_taps_of_a_vision_transformer_are_encoder_blocks():
    names = auto_layers(trace_layers(_model("vit_tiny"), torch.rand(2, 1, 28, 28)))
    assert len(names) == 4 and all(".encoder.layers.encoder_layer_" in n for n in names)
    assert names[-1].endswith("encoder_layer_5")


def test_taps_return_outputs_and_the_head_input_of_the_last_forward():
    model = _model("lenet5").eval()
    x = torch.rand(3, 1, 28, 28)
    with Taps(model, ["net.features.3", HEAD]) as taps:
        logits = model(x)
        conv, head = taps.take()
    assert conv.shape == (3, 16, 10, 10) and head.shape == (3, 84)
    assert torch.allclose(model.net.fc(head), logits)
    assert not model.net.features[3]._forward_hooks  # closed: hooks removed


def test_unknown_layer_lists_the_model_layers_with_the_closest_first():
    model = _model("lenet5")
    with pytest.raises(UserError) as err:
        resolve_layers(model, torch.rand(2, 1, 28, 28), ["net.featres.3"], "student")
    text = str(err.value)
    assert "did you mean 'net.features.3'" in text and "net.fc" in text and "distill inspect" in text


def test_attach_builds_connectors_from_a_first_batch_and_they_learn():
    student, teacher = _model("lenet5"), _model("resnet18").eval().requires_grad_(False)
    method = FitNet()
    x = torch.rand(4, 1, 28, 28)
    s_taps, t_taps, lines = attach_taps(student, teacher, method, "auto", "auto", x, 10, 100)
    assert sum(p.numel() for p in method.parameters()) > 0 and len(lines) == 2 + 4
    from distill.losses.base import DistillInputs

    s_out, t_out = student(x), teacher(x)
    terms = method(DistillInputs(s_out, t_out, torch.zeros(4, dtype=torch.long), s_taps.take(), t_taps.take()))
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in method.parameters() if p.requires_grad)
    assert student.net.features[0].weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_a_logits_only_teacher_cannot_be_tapped():
    with pytest.raises(UserError, match="logits only"):
        attach_taps(_model("lenet5"), None, FitNet(), "auto", "auto", torch.rand(2, 1, 28, 28), 10, 10)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_is_seeded_and_targets_sum_to_one(kind):
    x = torch.rand(16, 1, 8, 8)
    y = torch.arange(16) % 10
    a = mix_batch(x, y, 10, kind, 1.0, seed=7)
    b = mix_batch(x, y, 10, kind, 1.0, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    mixed, soft, hard = a
    assert torch.allclose(soft.sum(1), torch.ones(16)) and mixed.shape == x.shape
    lam = soft[torch.arange(16), y].min().item()  # the share of the original label (where labels differ)
    assert 0.0 <= lam <= 1.0
    assert torch.equal(hard, soft.argmax(1)) or lam == pytest.approx(0.5, abs=1e-6)


def test_kd_temperature_schedule_and_label_smoothing():
    kd = KDLoss(temperature=1.0, temperature_end=5.0, epochs=5, alpha=0.5, label_smoothing=0.1)
    assert [kd.temperature_at(e) for e in range(5)] == [1.0, 2.0, 3.0, 4.0, 5.0]
    s, y = torch.randn(8, 10), torch.randint(0, 10, (8,))
    _, parts = kd(s, s.clone(), y, epoch=3)
    assert parts["soft"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["hard"].item() == pytest.approx(F.cross_entropy(s, y, label_smoothing=0.1).item())
