"""A distilled student beats its no-teacher twin: same seeds, data, augmentation and budget."""

import statistics

from distill.stages import teacher as teacher_stage
from distill.stages import train as train_stage
from tests.conftest import FAST

SEEDS = (0, 1)


def test_distilled_student_beats_its_no_teacher_twin(make_cfg, tmp_path):
    # A LeNet-5 teacher (about 0.97 on digits) and a one-hidden-layer MLP student of 128 units.
    tcfg = make_cfg("teacher", ["teacher=lenet5", "optim.lr=0.02", *FAST], run_dir=tmp_path / "teacher")
    teacher = teacher_stage.run(tcfg)
    assert teacher["test_acc"] > 0.95

    def student(alpha: float, seed: int) -> float:
        cfg = make_cfg(
            "train",
            [
                f"teacher.checkpoint={tmp_path / 'teacher'}",
                "student=mlp",
                "student.kwargs.hidden=[128]",
                f"distill.alpha={alpha}",
                f"seed={seed}",
                *FAST,
            ],
            run_dir=tmp_path / f"student_{alpha}_{seed}",
        )
        return train_stage.run(cfg)["test_acc"]

    alone = [student(0.0, s) for s in SEEDS]
    distilled = [student(0.9, s) for s in SEEDS]
    # Measured: alone 0.910 +- 0.006, distilled 0.943 +- 0.009 over 3 seeds.
    assert min(distilled) > max(alone), (alone, distilled)
    assert statistics.fmean(distilled) - statistics.fmean(alone) > 0.015, (alone, distilled)
