"""distill compare through the CLI: every kind of candidate made and measured, files written."""

import json

from tests.conftest import FAST, run_cli


def test_compare_measures_every_candidate(digits_teacher, tmp_path):
    teacher, student, out = digits_teacher, tmp_path / "s", tmp_path / "cmp"
    args = ["teacher=lenet5", f"teacher.checkpoint={teacher}", "student=mlp", "student.kwargs.hidden=[32]"]
    done = run_cli("train", *args, "trainer.epochs=4", *FAST, f"hydra.run.dir={student}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli(
        "compare",
        f"teacher.checkpoint={teacher}",
        f"students=[{student}]",
        "compress.magnitude.sparsities=[0.5]",
        "compress.channel.ratios=[0.5]",
        "compress.lowrank.rank_ratios=[0.5]",
        "compress.magnitude.finetune_epochs=1",
        "compress.channel.finetune_epochs=1",
        "compress.lowrank.finetune_epochs=1",
        "latency_repeats=3",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["candidate"]: r for r in json.loads((out / "summary.json").read_text())["candidates"]}
    assert set(rows) == {
        "teacher lenet5",
        "magnitude 50%",
        "channels -50%",
        "low rank 0.5",
        "int8 dynamic",
        "int8 static",
        "student mlp",
        "student mlp int8",
    }
    t = rows["teacher lenet5"]
    assert t["agreement"] == 1.0 and t["make_seconds"] is None
    mag = rows["magnitude 50%"]
    assert mag["params"] == t["params"] and mag["nonzero_params"] < 0.6 * t["params"]
    assert rows["channels -50%"]["params"] < 0.6 * t["params"]
    assert rows["channels -50%"]["onnx_mb"] < t["onnx_mb"]
    assert rows["int8 static"]["onnx_mb"] < 0.5 * t["onnx_mb"]
    assert rows["student mlp"]["test_acc"] == json.loads((student / "summary.json").read_text())["test_acc"]
    assert any(r["pareto"] for r in rows.values())
    for name in ("compare.csv", "compare.md", "compare.png"):
        assert (out / name).stat().st_size > 0
