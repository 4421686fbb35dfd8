"""trainer.select: which epoch's weights a run keeps (distill.engine.fit.selects)."""

from __future__ import annotations

import json
import math

import pytest

from distill.engine.fit import selects
from tests.conftest import run_cli


def _kept(rule: str, vals: list[float], n_val: int = 400) -> int:
    """The 1-based epoch a run keeps when its epochs reach ``vals``, applied epoch by epoch as fit does."""
    kept = 0
    for i in range(len(vals)):
        if selects(rule, vals[i], vals[: i + 1], n_val):
            kept = i + 1
    return kept


# 400 val images: one (Agresti-Coull) standard error at 0.985 is 0.0069 (2.8 images)
CURVE = [0.90, 0.975, 0.985, 0.9825, 0.98, 0.9825, 0.9825]


def test_best_keeps_the_first_of_the_highest():
    assert _kept("best", CURVE) == 3
    assert _kept("best", [0.5, 0.7, 0.7]) == 2


def test_last_keeps_the_last():
    assert _kept("last", CURVE) == len(CURVE)


def test_one_se_keeps_the_latest_epoch_within_one_standard_error_of_the_best():
    assert _kept("one_se", CURVE) == len(CURVE)
    q = (0.985 * 400 + 2) / 404
    se = math.sqrt(q * (1 - q) / 404)
    # a last epoch more than one SE below the best is not kept: the run keeps the latest one within it
    assert _kept("one_se", [*CURVE, 0.985 - se - 0.002]) == len(CURVE)
    assert _kept("one_se", [*CURVE, 0.985 - se + 0.001]) == len(CURVE) + 1


def test_one_se_compares_with_the_best_of_the_whole_run_not_the_best_so_far():
    # epoch 2 was within one SE of epoch 1, but epoch 3 is far higher: epoch 2 must not stay kept
    assert _kept("one_se", [0.80, 0.795, 0.95, 0.90]) == 3


def test_one_se_does_not_shrink_to_nothing_near_100_percent():
    # 396 of 400 right, then 394: the plain sqrt(p(1-p)/n) would be 1.99 images and call the 2-image
    # drop real; Agresti-Coull's 2.6 images does not (a teacher kept epoch 10 of 20 at 0.979 test
    # that way, where epoch 19 had the same val accuracy as the later ones)
    assert _kept("one_se", [0.9, 0.99, 0.985, 0.9825, 0.985]) == 5


@pytest.mark.parametrize("n_val,kept", [(400, 3), (40, 4)])
def test_one_se_narrows_with_more_val_images(n_val, kept):
    # at 0.95 one SE is 0.011 on 400 images, 0.033 on 40: a drop to 0.93 is a real one only on 400
    assert _kept("one_se", [0.5, 0.9, 0.95, 0.93], n_val) == kept


@pytest.mark.parametrize("rule", ["last", "best"])
def test_the_kept_epoch_is_what_the_summary_and_the_weights_file_say(rule, tmp_path):
    """Kept last: the test split is predicted once, with the weights in memory; kept earlier: they are
    read back from best.safetensors. Either way summary, file and `distill eval` agree."""
    # a 16-unit MLP alone, 4 epochs at a rate that moves val accuracy up and down between epochs
    args = ["dataset=digits", "student=mlp", "student.kwargs.hidden=[16]", "distill.alpha=0", "optim.lr=0.5"]
    out = run_cli("train", *args, "trainer.epochs=4", "trainer.threads=2", "trainer.progress=off",
                  f"trainer.select={rule}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    vals = [json.loads(line)["val_acc"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["best_epoch"] == (4 if rule == "last" else vals.index(max(vals)) + 1)
    assert summary["select"] == rule
    if rule == "last":
        assert summary["test_acc"] == summary["last_test_acc"]
    ev = run_cli("eval", f"run={tmp_path / 'run'}", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["top1"] == pytest.approx(summary["test_acc"])
