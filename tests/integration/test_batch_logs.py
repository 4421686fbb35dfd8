"""What a batch job's log shows (stdout not a terminal): whole lines with ISO timestamps, progress lines
inside epochs, the run folder at the end; and each epoch's metrics line holds the lr it trained with."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import read_metrics, run_cli

ISO_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\]\[(INFO|WARNING)\] \S")
PROGRESS = re.compile(r"epoch 1/1  step (\d+)/(\d+)  loss \d+\.\d{4}  acc \d\.\d{3}  \d+ img/s  ETA \d+:\d\d:\d\d$")


def test_a_batch_jobs_log_has_whole_lines_progress_inside_epochs_and_the_run_folder(tmp_path: Path) -> None:
    # a folder name long enough that rich's 80 columns would have cut every line naming it
    run = tmp_path / ("a_folder_name_long_enough_to_be_wrapped_at_eighty_columns_" * 2) / "teacher"
    args = ["teacher=lenet5", "dataset=digits", "trainer.epochs=1", "sched.warmup_epochs=0", "trainer.threads=2"]
    result = run_cli(
        "teacher", *args, "trainer.log_every_s=0.001", f"paths.root={tmp_path}", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    logged = [line for line in lines if line.startswith("[")]
    assert logged and all(ISO_LINE.match(line) for line in logged), logged[:5]
    # nothing wrapped: a logged sentence ends on its own line, the run folder is named whole
    assert any(
        "training lenet5 (61,706 parameters) on digits:" in line and line.endswith("device cpu") for line in lines
    )
    assert lines[-1] == f"teacher run folder: {run}", lines[-3:]
    # progress lines inside the epoch, before its end-of-epoch line; in the run's log file too
    steps = [(i, PROGRESS.search(line)) for i, line in enumerate(lines) if PROGRESS.search(line)]
    end = next(i for i, line in enumerate(lines) if "epoch 1/1  loss" in line)
    assert steps and all(i < end for i, _ in steps), lines
    assert any(int(m[1]) < int(m[2]) for _, m in steps), [m[0] for _, m in steps]
    assert any(PROGRESS.search(line) for line in (run / "teacher.log").read_text().splitlines())
    # a 1-epoch run's metrics line holds the lr the epoch trained with (the teacher recipe's 0.05, no
    # warm-up), not the next epoch's (0 at the end of a cosine schedule)
    assert [row["lr"] for row in read_metrics(run)] == [0.05]
