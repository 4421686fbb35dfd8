"""The onnxruntime teacher: used only when it gives PyTorch's logits, and a refusal is remembered."""

import torch
from torch import nn

from distill.engine.teacher_backend import onnxruntime_teacher


class _Net(nn.Module):
    def __init__(self, noisy: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)
        self.noisy = noisy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))
        # a value the tracer freezes into the graph: onnxruntime's logits cannot match PyTorch's
        return out + torch.rand(out.shape) * 10 if self.noisy else out


def test_a_faithful_export_runs_and_matches(tmp_path):
    torch.manual_seed(0)
    net = _Net().eval()
    net.bn.running_mean.uniform_(-1, 1)  # BatchNorm that onnxruntime folds into the convolution
    images = torch.rand(16, 1, 8, 8)
    teacher = onnxruntime_teacher(net, "ab" * 32, tmp_path, images, threads=1)
    assert teacher is not None
    assert (tmp_path / "onnx" / f"{'ab' * 12}.onnx").is_file()
    with torch.no_grad():
        assert torch.allclose(teacher(images[:5]), net(images[:5]), atol=1e-5)
    again = onnxruntime_teacher(net, "ab" * 32, tmp_path, images, threads=1)  # reads the exported file
    assert again is not None and again.path == teacher.path


def test_a_teacher_that_differs_stays_in_pytorch_and_is_not_tried_again(tmp_path, caplog):
    net = _Net(noisy=True).eval()
    images = torch.rand(16, 1, 8, 8)
    assert onnxruntime_teacher(net, "cd" * 32, tmp_path, images, threads=1) is None
    refused = tmp_path / "onnx" / f"{'cd' * 12}.refused"
    assert "differ" in refused.read_text()
    caplog.clear()
    with caplog.at_level("INFO", logger="distill"):
        assert onnxruntime_teacher(net, "cd" * 32, tmp_path, images, threads=1) is None
    assert "found by an earlier run" in caplog.text


def test_the_faster_runtime_is_measured_once_and_remembered(tmp_path):
    """teacher_backend=auto with teacher_precision=auto on a CPU with native bf16: PyTorch bf16 against
    onnxruntime float32, timed on this machine; the second run reads the choice instead of timing again.
    (The measurement itself runs on any CPU: bf16 autocast is emulated where it is not native.)"""
    from distill.engine.teacher_backend import faster_teacher_runtime

    torch.manual_seed(0)
    net = _Net().eval()
    images = torch.rand(16, 1, 8, 8)
    choice, first = faster_teacher_runtime(net, "ef" * 32, tmp_path, images, threads=1, channels_last=False)
    assert choice in ("onnxruntime", "bf16") and first["measured_now"]
    assert first["bf16_images_per_s"] > 0 and first["onnxruntime_images_per_s"] > 0
    faster = "onnxruntime" if first["onnxruntime_images_per_s"] > first["bf16_images_per_s"] else "bf16"
    assert choice == faster
    again, second = faster_teacher_runtime(net, "ef" * 32, tmp_path, images, threads=1, channels_last=False)
    assert (again, second["measured_now"], second["record"]) == (choice, False, first["record"])
    # another thread count is another measurement
    _, other = faster_teacher_runtime(net, "ef" * 32, tmp_path, images, threads=2, channels_last=False)
    assert other["measured_now"] and other["record"] != first["record"]
