"""Every method teaches: the README's method table, one seed of it, asserted.

The README's digits column (resnet18 teacher of 20 epochs, lenet5 student, 15 epochs, every method
with its YAML defaults): each method must end well above chance (0.10 on ten classes), and the logit
methods and attention transfer above the student alone with the same seed and budget, as the table
says they do. Teacher and student run in float32 PyTorch on every CPU, so the figures do not depend
on the machine's bf16 or a timing. Measured on an AMD EPYC (AVX-512, bf16), seed 0: teacher 0.981,
alone 0.903; kd 0.958, dkd 0.939, dist 0.969, multi_teacher 0.975, at 0.961; rkd 0.950, sp 0.864,
pkt 0.889, crd 0.842, byot 0.883, mutual 0.939, online 0.914; fitnet 0.519 (see its mark). About 6-9
minutes on 2 cores.
"""

from pathlib import Path

import pytest

from distill import api, config_dir
from tests.conftest import FAST, FLOAT32_TEACHER, method_args

METHODS = sorted(p.stem for p in (Path(config_dir()) / "distill").glob("*.yaml"))
BEATS_ALONE = {"kd", "dkd", "dist", "multi_teacher", "at"}  # the README's logit methods and AT
WELL_ABOVE_CHANCE = 0.5
# the student recipe the README's table was measured with (before optim.lr=auto and trainer.grad_clip: at
# lenet's auto rate 0.1 with the limit, lenet5 alone comes within 0.03 of this teacher on digits)
RECIPE = ["optim.lr=0.01", "trainer.grad_clip=null"]
BUDGET = ["dataset=digits", "student=lenet5", "trainer.epochs=15", "seed=0", *RECIPE, *FLOAT32_TEACHER, *FAST]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> dict:
    """The teacher, the student alone, and where to write each method's run."""
    root = tmp_path_factory.mktemp("methods_learn")
    teacher = root / "teacher"
    summary = api.run(
        "teacher",
        ["teacher=resnet18", "dataset=digits", "trainer.epochs=20", "trainer.precision=32", *FAST, f"paths.root={root}",
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
        # The default hint (weight 100 on every stage) swamps the student's cross-entropy: 0.092 with a
        # bf16 teacher, 0.519 with the float32 one used here (just over the 0.5 bar, 0.38 below the
        # student alone); weight 1, one layer pair, or hint_epochs=2 with alpha=0.5 did no better.
        # Not strict: on the edge of the bar, an XPASS says nothing; issue 18 fixes the defaults.
        return [pytest.mark.xfail(strict=False, reason="fitnet's defaults barely learn at this budget")]
    return []


@pytest.mark.parametrize("method", [pytest.param(m, marks=_marks(m)) for m in METHODS])
def test_every_method_learns_and_the_logit_methods_and_at_beat_the_student_alone(method, table):
    acc = _train(table["root"], table["teacher"], method, [f"distill={method}"])
    assert acc > WELL_ABOVE_CHANCE, f"{method}: {acc:.3f} (chance 0.10)"
    if method in BEATS_ALONE:
        assert acc > table["alone"], f"{method}: {acc:.3f} <= student alone {table['alone']:.3f}"
