"""Every method teaches: the README's method table, one seed of it, asserted.

The README's digits column (resnet18 teacher of 20 epochs, lenet5 student, 15 epochs, every method
with its YAML defaults): each method must end well above chance (0.10 on ten classes), and the logit
methods and attention transfer above the student alone with the same seed and budget, as the table
says they do. Measured on an AMD EPYC (AVX-512, bf16), seed 0: teacher 0.981, alone 0.903; kd 0.967,
dkd 0.958, dist 0.961, multi_teacher 0.967, at 0.975; rkd 0.953, sp 0.897, pkt 0.875, crd 0.842,
byot 0.883, mutual 0.939, online 0.914; fitnet 0.092 (see its mark). About 6 minutes on 2 cores.
"""

from pathlib import Path

import pytest

from distill import api, config_dir
from tests.conftest import FAST, method_args

METHODS = sorted(p.stem for p in (Path(config_dir()) / "distill").glob("*.yaml"))
BEATS_ALONE = {"kd", "dkd", "dist", "multi_teacher", "at"}  # the README's logit methods and AT
WELL_ABOVE_CHANCE = 0.5
BUDGET = ["dataset=digits", "student=lenet5", "trainer.epochs=15", "seed=0", *FAST]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> dict:
    """The teacher, the student alone, and where to write each method's run."""
    root = tmp_path_factory.mktemp("methods_learn")
    teacher = root / "teacher"
    summary = api.run(
        "teacher",
        ["teacher=resnet18", "dataset=digits", "trainer.epochs=20", *FAST, f"paths.root={root}",
         f"paths.output_dir={teacher}"],
    )  # fmt: skip
    assert summary["test_acc"] > 0.95, summary["test_acc"]
    alone = _train(root, teacher, "alone", ["distill.alpha=0"])
    assert alone < summary["test_acc"] - 0.03, "a student alone as good as its teacher shows nothing"
    return {"root": root, "teacher": teacher, "alone": alone}


def _train(root: Path, teacher: Path, name: str, args: list[str]) -> float:
    out = root / name
    args = [*BUDGET, *args, f"paths.root={root}", f"paths.output_dir={out}"]
    return api.run("train", [*args, *method_args(name, teacher, "resnet18")])["test_acc"]


def _marks(method: str):
    if method == "fitnet":
        # Measured 0.092: the default hint (weight 100 on every stage, hint MSE ~1.8 against resnet18's
        # features) holds the student's cross-entropy at 2.30 for all 15 epochs; weight 1, one layer
        # pair, or hint_epochs=2 with alpha=0.5 stayed at chance too. Strict: it fails once fixed.
        return [pytest.mark.xfail(strict=True, reason="fitnet's defaults do not learn at this budget")]
    return []


@pytest.mark.parametrize("method", [pytest.param(m, marks=_marks(m)) for m in METHODS])
def test_every_method_learns_and_the_logit_methods_and_at_beat_the_student_alone(method, table):
    acc = _train(table["root"], table["teacher"], method, [f"distill={method}"])
    assert acc > WELL_ABOVE_CHANCE, f"{method}: {acc:.3f} (chance 0.10)"
    if method in BEATS_ALONE:
        assert acc > table["alone"], f"{method}: {acc:.3f} <= student alone {table['alone']:.3f}"
