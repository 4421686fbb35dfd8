"""``trainer.mix``: mixup and cutmix reach the teacher, the student, online peers and BYOT heads alike."""

from __future__ import annotations

import json
import math

from tests.conftest import (
    ONE_EPOCH,
    method_args,
    read_summary,
    run_cli,
)


def test_mixup_and_cutmix_train_teacher_and_student_on_the_same_batch(digits_teacher, tmp_path):
    # Mixed soft targets reach every cross-entropy term: the student's, online peers', BYOT heads'.
    for mix, method in (("mixup", "kd"), ("cutmix", "mutual"), ("mixup", "byot")):
        out = tmp_path / f"{mix}_{method}"
        result = run_cli(
            "train",
            f"trainer.mix={mix}",
            f"distill={method}",
            "student=lenet5",
            *method_args(method, digits_teacher),
            *ONE_EPOCH,
            f"paths.output_dir={out}",
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        summary = read_summary(out)
        # the teacher saw the mixed batch itself: it ran live, never from views cached before mixing
        if method == "kd":
            assert summary["teacher_cache"] == {
                "used": False,
                "reason": f"trainer.mix={mix} mixes images after the views are drawn",
            }
        row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
        soft = {
            k: v
            for k, v in row.items()
            if k.startswith("train_") and k not in ("train_loss", "train_acc", "train_hard")
        }
        assert soft and all(v > 0 and math.isfinite(v) for v in soft.values()), row  # the mixed soft targets
