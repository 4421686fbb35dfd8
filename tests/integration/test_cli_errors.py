"""Bad input: one line on stderr, exit code 2, no traceback, nothing written.

The cases run through ``distill.cli.main`` in this process (the command's own code, minus an
interpreter start-up each); a few go through ``python -m distill`` too, as a user types them."""

from pathlib import Path

import pytest
from safetensors.torch import save_file

from tests.conftest import run_cli, run_cli_here


def _check_one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    import pickle

    import torch

    pkl = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2)}, pkl)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, foreign)
    return {"pickle": pkl, "raw": raw, "corrupt": corrupt, "foreign": foreign}


CASES = [
    (["trian"], ["unknown stage 'trian'", "did you mean 'train'"]),
    (["train", "teacher=resnet1522"], ["unknown teacher 'resnet1522'", "resnet152"]),
    (["train", "student=mobilnet"], ["unknown student", "mobilenet"]),
    (["train", "dataset=minst5k"], ["unknown dataset", "mnist5k"]),
    (["train", "distill.temperature=0"], ["distill.temperature must be > 0"]),
    (["train", "distill.temperature=abc"], ["distill.temperature must be a number"]),
    (["train", "distill.alpha=1.5"], ["distill.alpha must be <= 1"]),
    (["train", "distill.loss=kll"], ["distill.loss", "'kl'"]),
    (["train", "distill.temprature=2"], ["unknown config key 'distill.temprature'", "distill.temperature"]),
    (["train", "optim.lr=-1"], ["optim.lr must be > 0"]),
    (["train", "optim.momentum=-1"], ["optim: Invalid momentum value: -1"]),
    (["teacher", "sched.warmup_epochs=-3"], ["sched.warmup_epochs must be >= 0"]),
    (["train", "distill.temperature=${nowhere}"], ["nowhere"]),
    (["train", "teacher=0"], ["teacher"]),
    (["train", "trainer.epochs=0", "trainer.batch_size=x"], ["trainer.epochs", "trainer.batch_size"]),
    (["train", "teacher.checkpoint=/nonexistent/run"], ["teacher.checkpoint=/nonexistent/run does not exist"]),
    (["train", "dataset=imagefolder"], ["dataset.root must be given"]),
    (["train", "-m", "distill.temperature=1,-2"], ["distill.temperature must be > 0", "distill.temperature=-2"]),
    (["eval", "run=/nonexistent"], ["/nonexistent does not exist"]),
    (["export"], ["run must be given"]),
    (["report", "/nonexistent"], ["is not a folder"]),
]


@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needles):
    result = run_cli_here(*args, cwd=tmp_path)
    _check_one_line_error(result, *needles)
    assert not (tmp_path / "outputs").exists()
    assert not Path("/nonexistent").exists()


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("pickle", "is a pickle"),
        ("raw", "is a pickle"),
        ("corrupt", "not a safetensors"),
        ("foreign", "without distill"),
    ],
)
def test_bad_weight_files_are_refused_without_unpickling(tmp_path, bad_files, kind, needle):
    result = run_cli_here("eval", f"run={bad_files[kind]}", cwd=tmp_path)
    _check_one_line_error(result, needle)
    if kind != "foreign":  # a plain safetensors state dict is a valid teacher checkpoint
        result = run_cli_here("train", f"teacher.checkpoint={bad_files[kind]}", cwd=tmp_path)
        _check_one_line_error(result, "teacher.checkpoint", needle)
        assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "args,needles",
    [
        (["trian"], ["unknown stage 'trian'"]),
        (["train", "distill.temprature=2"], ["unknown config key 'distill.temprature'", "distill.temperature"]),
        (["train", "-m", "distill.temperature=1,-2"], ["distill.temperature must be > 0"]),
        (["train", "teacher.checkpoint=PICKLE"], ["teacher.checkpoint", "is a pickle"]),
    ],
    ids=["stage", "key", "sweep", "pickle"],
)
def test_the_command_itself_reports_in_one_line(tmp_path, bad_files, args, needles):
    """The same through a new ``python -m distill`` process, as a user types it."""
    args = [a.replace("PICKLE", str(bad_files["pickle"])) for a in args]
    result = run_cli(*args, cwd=tmp_path, timeout=120)
    _check_one_line_error(result, *needles)
    assert not (tmp_path / "outputs").exists()
