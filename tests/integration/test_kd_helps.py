"""A distilled student beats its no-teacher twin: same seeds, data, augmentation and budget."""

import statistics

import pytest

from distill import api
from distill.stages import teacher as teacher_stage
from distill.stages import train as train_stage
from tests.conftest import DIGITS, FAST, outputs_root

SEEDS = (0, 1)


def test_distilled_student_beats_its_no_teacher_twin(make_cfg, tmp_path):
    # A LeNet-5 teacher (about 0.97 on digits) and a one-hidden-layer MLP student of 128 units.
    recipe = ["teacher=lenet5", "optim.lr=0.02", "trainer.epochs=30", "sched.warmup_epochs=0", *FAST]
    tcfg = make_cfg("teacher", recipe, run_dir=tmp_path / "teacher")
    teacher = teacher_stage.run(tcfg)
    assert teacher["test_acc"] > 0.95

    def student(alpha: float, seed: int) -> dict:
        cfg = make_cfg(
            "train",
            [
                f"teacher.checkpoint={tmp_path / 'teacher'}",
                "student=mlp",
                "student.kwargs.hidden=[128]",
                f"distill.alpha={alpha}",
                f"seed={seed}",
                # the student recipe these figures were measured with (at the defaults, lr auto = 0.05 and
                # grad_clip 1, both get better: alone 0.953, distilled 0.967 over these 2 seeds; 30 epochs
                # and the best-val epoch, as before the defaults became 60 epochs and one_se)
                "optim.lr=0.01",
                "trainer.grad_clip=null",
                "trainer.epochs=30",
                "trainer.select=best",
                *FAST,
            ],
            run_dir=tmp_path / "outputs" / "train" / f"{alpha}_{seed}",
        )
        return train_stage.run(cfg)

    alone = [student(0.0, s)["test_acc"] for s in SEEDS]
    runs = [student(0.9, s) for s in SEEDS]
    distilled = [r["test_acc"] for r in runs]
    # Each distilled run reports the matching student-alone runs beside it.
    assert runs[0]["student_alone"] == {
        "test_acc_mean": pytest.approx(statistics.fmean(alone)),
        "test_acc_std": pytest.approx(statistics.stdev(alone), abs=1e-6),
        "runs": 2,
    }
    # Measured: alone 0.910 +- 0.006, distilled 0.943 +- 0.009 over 3 seeds.
    assert min(distilled) > max(alone), (alone, distilled)
    assert statistics.fmean(distilled) - statistics.fmean(alone) > 0.015, (alone, distilled)


def test_a_teacher_not_above_the_student_alone_is_warned_about(digits_teacher, tmp_path):
    base = ["student=mlp", *DIGITS, "trainer.epochs=3", outputs_root(tmp_path)]
    # under paths.root, where train looks for the student-alone runs to compare with
    alone = api.run("train", [*base, "distill.alpha=0", f"paths.output_dir={tmp_path / 'outputs' / 'train' / 'alone'}"])
    weak = tmp_path / "weak"
    api.run("teacher", ["teacher=lenet5", *DIGITS, "trainer.epochs=1", "optim.lr=1e-4", outputs_root(tmp_path),
                        f"paths.output_dir={weak}"])  # fmt: skip
    summary = api.run(
        "train", [*base, "teacher=lenet5", f"teacher.checkpoint={weak}", f"paths.output_dir={tmp_path / 'kd'}"]
    )
    assert summary["teacher_test_acc"] < alone["test_acc"]
    assert any("is not above the student trained alone" in w for w in summary["warnings"]), summary["warnings"]
    # a teacher this far below the student it taught (1 epoch at lr 1e-4: near chance) is said to be undertrained
    assert summary["teacher_test_acc"] < summary["test_acc"] - 0.05
    assert any("is far below the student it taught" in w for w in summary["warnings"]), summary["warnings"]
