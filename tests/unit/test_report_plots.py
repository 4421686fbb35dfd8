"""``distill report`` on a sweep folder and the plots of report and compare: sweep.csv rounded for
reading while sweep_runs.csv keeps every figure, a teacher far below its students warned about,
temperature ticks at the swept values, the student-alone line, compare's labels inside the figure."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import matplotlib
import pytest
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from distill.stages import compare  # noqa: E402
from distill.stages.report import report  # noqa: E402

# test accuracies with float noise in their mean (0.459722 and 0.4597220000000001 average to 0.45972199999999996)
ACCS = {("1", 0): 0.459722, ("1", 1): 0.4597220000000001, ("4", 0): 0.769444, ("4", 1): 0.775}


def _sweep(root: Path, teacher_acc: float, alone: dict | None) -> Path:
    """A finished sweep folder as ``distill train -m distill.temperature=1,4 seed=0,1`` leaves it."""
    for i, ((t, seed), acc) in enumerate(ACCS.items()):
        run = root / str(i)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"distill.temperature={t}", f"seed={seed}"]))
        summary = {"stage": "train", "dataset": "digits", "teacher": "lenet5", "student": "mlp", "seed": seed,
                   "test_acc": acc, "val_acc": acc, "teacher_test_acc": teacher_acc, "train_seconds": 1.2345678,
                   "student_alone": alone}  # fmt: skip
        (run / "summary.json").write_text(json.dumps(summary))
    return root


@pytest.fixture
def figures(monkeypatch) -> list:
    """The figures the plots make, kept open for the test to read (instead of closed once saved)."""
    kept: list = []
    close = plt.close
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        close(fig)


def test_sweep_csv_is_rounded_and_sweep_runs_csv_keeps_full_precision(tmp_path: Path, figures) -> None:
    root = _sweep(tmp_path / "sweep", teacher_acc=0.97, alone=None)
    report(root)
    rows = list(csv.DictReader((root / "sweep.csv").open()))
    assert [r["test_acc_mean"] for r in rows] == ["0.4597", "0.7722"]
    assert all(len(v.split(".")[1]) <= 4 for r in rows for v in r.values() if "." in v), rows
    runs = list(csv.DictReader((root / "sweep_runs.csv").open()))
    assert [float(r["test_acc"]) for r in runs] == list(ACCS.values())  # every digit, as the summaries hold it
    assert runs[1]["test_acc"] == "0.4597220000000001" and runs[0]["train_seconds"] == "1.2345678"


def test_a_teacher_far_below_its_students_is_warned_about(tmp_path: Path, caplog, figures) -> None:
    with caplog.at_level(logging.WARNING, logger="distill"):
        report(_sweep(tmp_path / "good", teacher_acc=0.80, alone=None))  # 0.80 against 0.77: no word
        assert "far below" not in caplog.text
        report(_sweep(tmp_path / "weak", teacher_acc=0.339, alone=None))
    assert "the teacher (0.3390) is far below the students it taught with distill.temperature=4 (0.7722)" in (
        caplog.text
    )


def test_sweep_plot_has_a_title_the_swept_temperatures_on_a_log2_axis_and_the_student_alone(
    tmp_path: Path, figures
) -> None:
    alone = {"test_acc_mean": 0.7, "test_acc_std": 0.01, "runs": 3}
    report(_sweep(tmp_path / "sweep", teacher_acc=0.97, alone=alone))
    (ax,) = figures[-1].axes
    assert ax.get_title() == "digits: lenet5 \u2192 mlp, seeds 0, 1"
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert list(ax.get_xticks()) == [1.0, 4.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4"]
    labels = ax.get_legend_handles_labels()[1]
    assert "teacher (0.970)" in labels and "student alone (0.700 ± 0.010, 3 runs)" in labels
    assert len(ax.patches) == 1  # the student alone's spread (mean ± std)


def test_compare_plot_keeps_labels_inside_plain_ticks_and_a_size_legend(tmp_path: Path, figures) -> None:
    rows = [
        {"candidate": c, "method": m, "test_acc": a, "latency_b1_ms": ms, "onnx_mb": mb, "pareto": p}
        for c, m, a, ms, mb, p in [
            ("teacher resnet18", "baseline", 0.979, 0.89, 44.8, False),
            ("int8 static", "quantization", 0.980, 2.1, 11.4, True),
            ("low rank 0.5", "low-rank SVD", 0.979, 0.52, 25.5, True),
            ("student lenet5", "distillation", 0.973, 0.031, 0.27, True),
            ("student lenet5 int8", "distillation + int8", 0.973, 0.053, 0.09, False),
        ]
    ]
    compare.plot(rows, tmp_path / "compare.png", "mnist5k: 1000 test images")
    assert (tmp_path / "compare.png").stat().st_size > 1000
    fig = figures[-1]
    fig.canvas.draw()  # at the figure's own dpi, that of fig.bbox
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox
    ax = fig.axes[0]
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the candidates' labels, words only
    assert len(boxes) == len(rows)
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1 for b in boxes)
    # the teacher, int8 static and low rank 0.5 sit within 0.001 of accuracy: their labels are moved apart
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all("10^" not in t and "times" not in t and "$" not in t for t in ticks), ticks
    legend = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "Pareto front" in legend and "distillation" in legend
    assert "44.8 MB" in legend and "4.48 MB" in legend, legend  # point area = file size, said by a legend
