"""Config composition from the command line: ``experiment=`` overlays and ``--cfg job``."""

from __future__ import annotations

from tests.conftest import (
    run_cli,
)


def test_an_experiment_overlay_and_cfg_job(tmp_path):
    shown = run_cli("train", "experiment=mnist5k_resnet18_mlp", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    import yaml

    cfg = yaml.safe_load(shown.stdout)
    assert cfg["dataset"]["_target_"].endswith("mnist5k") and cfg["teacher"]["name"] == "resnet18"
    assert cfg["student"]["name"] == "mlp" and cfg["trainer"]["epochs"] == 40
    assert not (tmp_path / "outputs").exists(), "--cfg job runs nothing"
