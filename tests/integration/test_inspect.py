"""``distill inspect``: a model's layers, shapes and the layers ``auto`` taps."""

from __future__ import annotations

from tests.conftest import (
    run_cli,
)


def test_inspect_lists_layers_shapes_and_the_auto_taps(tmp_path):
    result = run_cli("inspect", "teacher=resnet18", "dataset=digits", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in ("net.layer4", "512x1x1", "auto", "head (input)", "net.fc"):
        assert text in result.stdout, text
    assert not (tmp_path / "outputs").exists()
