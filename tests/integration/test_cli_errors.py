"""Bad input: one line on stderr, exit code 2, no traceback, nothing written.

The cases run through ``distill.cli.main`` in this process (the command's own code, minus an
interpreter start-up each); a few go through ``python -m distill`` too, as a user types them."""

from pathlib import Path

import pytest
from safetensors.torch import save_file

from tests.conftest import launch, run_cli


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
    (["train", "trainer.grad_clip=0"], ["trainer.grad_clip must be > 0"]),
    (["train", "optim.momentum=-1"], ["optim: Invalid momentum value: -1"]),
    (["teacher", "sched.warmup_epochs=-3"], ["sched.warmup_epochs must be >= 0"]),
    (["train", "distill.temperature=${nowhere}"], ["nowhere"]),
    (["train", "teacher=0"], ["teacher"]),
    (["train", "trainer.epochs=0", "trainer.batch_size=x"], ["trainer.epochs", "trainer.batch_size"]),
    # typed schemas refuse a wrong type at composition; every such value is reported with the checks' problems
    (
        ["train", "trainer.batch_size=x", "trainer.compile=maybe", "cache.max_gb=lots", "distill.alpha=2"],
        [
            "trainer.batch_size must be a whole number, got 'x'",
            "trainer.compile must be true or false, got 'maybe'",
            "cache.max_gb must be a number, got 'lots'",
            "distill.alpha must be <= 1",
        ],
    ),  # fmt: skip
    (["train", "teacher.checkpoint=/nonexistent/run"], ["teacher.checkpoint=/nonexistent/run does not exist"]),
    (["train", "dataset=imagefolder"], ["dataset.root must be given"]),
    (["train", "-m", "distill.temperature=1,-2"], ["distill.temperature must be > 0", "distill.temperature=-2"]),
    # a method's own checks: its constructor, and Method.check for the run's number of teachers
    (["train", "distill=fitnet", "distill.method.hint_epochs=1.5"], ["(FitNet): hint_epochs must be a whole number"]),
    (["train", "distill=multi_teacher", "distill.method.weights=[1,2]"], ["distill.method.weights has 2 values for 1"]),
    (["eval", "run=/nonexistent"], ["/nonexistent does not exist"]),
    (["export"], ["run must be given"]),
    (["report", "/nonexistent"], ["is not a folder"]),
    (["train", "teacher=onnx", "teacher.path=/"], ["teacher.path=/ is a folder; give the file itself"]),
    (["train", "cache.dir=/etc/passwd"], ["cache.dir=/etc/passwd", "file"]),
    (
        [
            "teacher",
            "dataset=imagefolder",
            "dataset.root=/tmp",
            "dataset.in_memory=sometimes",
            "dataset.memory_gb=lots",
            "dataset.policy=auto",
            "dataset.on_bad_image=ignore",
        ],
        [
            "dataset.in_memory must be auto, true or false, got 'sometimes'",
            "dataset.memory_gb must be a number",
            "dataset.policy='auto' is not one of none, randaugment, trivialaugment",
            "dataset.on_bad_image='ignore'",
        ],
    ),  # fmt: skip
]


@pytest.mark.parametrize("args,needles", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, needles):
    result = run_cli(*args, cwd=tmp_path)
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
    result = run_cli("eval", f"run={bad_files[kind]}", cwd=tmp_path)
    _check_one_line_error(result, needle)
    if kind != "foreign":  # a plain safetensors state dict is a valid teacher checkpoint
        result = run_cli("train", f"teacher.checkpoint={bad_files[kind]}", cwd=tmp_path)
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
    result = launch(*args, cwd=tmp_path, timeout=120)
    _check_one_line_error(result, *needles)
    assert not (tmp_path / "outputs").exists()


# --- bad image folders, model.json files and unquoted paths, made for real --------------------------
# An image folder is read when the stage runs (the check before the run sees only the config): the
# one line comes from the dataset builder, after Hydra has made the run folder, which must not look
# like a finished run.


def _images(folder: Path, n: int = 2) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8), "RGB").save(folder / f"{i}.png")


def _image_folder(root: Path) -> Path:
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            _images(root / split / name)
    return root


def _bad_image_folder(kind: str, base: Path) -> tuple[Path, Path]:
    """(dataset.root, the path the error must name) for one kind of bad input."""
    import io
    import os

    import numpy as np
    from PIL import Image

    root = base / "photos"
    if kind == "root-is-a-file":
        root.parent.mkdir(parents=True, exist_ok=True)
        root.write_bytes(b"PK\x03\x04 a zip, not a folder")
        return root, root
    if kind == "no-images":
        (root / "train").mkdir(parents=True)
        (root / "val").mkdir()
        return root, root / "train"
    _image_folder(root)
    if kind == "not-an-image":
        bad = root / "train" / "cat" / "notes.jpg"
        bad.write_text("not a photo\n")
    elif kind == "truncated-jpeg":
        buffer = io.BytesIO()
        Image.fromarray(np.random.RandomState(0).randint(0, 256, (48, 48, 3), dtype=np.uint8)).save(buffer, "JPEG")
        bad = root / "val" / "dog" / "cut.jpg"
        bad.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "val-class-train-lacks":
        _images(root / "val" / "emu", 1)
        bad = root / "val"
    elif kind == "empty-class":
        bad = root / "train" / "emu"
        bad.mkdir()
    elif kind == "symlink-loop":
        bad = root / "train" / "loop"
        os.symlink(root / "train", bad)
    elif kind == "fifo-only-class":
        bad = root / "train" / "emu"
        bad.mkdir()
        os.mkfifo(bad / "camera.png")
    return root, bad


IMAGE_FOLDER_CASES = {
    "root-is-a-file": "is a file",
    "no-images": "no class folders in",
    "not-an-image": "is not an image PIL can read",
    "truncated-jpeg": "truncated",
    "val-class-train-lacks": "train/ lacks: emu",
    "empty-class": "has no images",
    "symlink-loop": "symbolic-link loop",
    "fifo-only-class": "skipped 'camera.png': not a regular file",
}


def _no_finished_run(out: Path) -> None:
    assert not list(out.rglob("summary.json")) and not list(out.rglob("*.safetensors")), sorted(out.rglob("*"))


@pytest.mark.parametrize("kind", list(IMAGE_FOLDER_CASES))
def test_a_bad_image_folder_is_one_line_naming_the_path(tmp_path, kind):
    root, bad = _bad_image_folder(kind, tmp_path)
    out = tmp_path / "outputs"
    result = run_cli(
        "teacher", "dataset=imagefolder", f"dataset.root={root}", "teacher=mlp", "trainer.epochs=1",
        f"paths.root={out}", "trainer.progress=off", cwd=tmp_path,
    )  # fmt: skip
    _check_one_line_error(result, str(bad), IMAGE_FOLDER_CASES[kind])
    assert result.stderr.startswith("distill teacher: error: ")
    _no_finished_run(out)


def _onnx_teacher(folder: Path, meta: str) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, 28])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["logits"])]
    w = numpy_helper.from_array(np.zeros((784, 10), np.float32), "w")
    graph = helper.make_graph(nodes, "linear", [x], [y], [w])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    (folder / "model.json").write_text(meta)
    return path


@pytest.mark.parametrize(
    "meta,needle",
    [
        ("[" * 100_000 + "]" * 100_000, "model.json is not a valid model.json (nested too deeply)"),
        ('{"input": {"channels": true}}', "model.json: input.channels must be a whole number from 1 to 4096, got true"),
        ('{"classes": [1, 2]}', "model.json: classes must be a non-empty list of names"),
        ('{"input": {"height": "28"}}', "model.json: input.height must be a whole number"),
    ],
    ids=["deep", "bool-channels", "classes-not-names", "height-a-string"],
)
def test_a_bad_model_json_beside_an_onnx_teacher_is_one_line(tmp_path, meta, needle):
    onnx_file = _onnx_teacher(tmp_path / "teacher", meta)
    out = tmp_path / "outputs"
    result = run_cli(
        "train", "teacher=onnx", f"teacher.path={onnx_file}", "student=mlp", f"paths.root={out}", cwd=tmp_path
    )
    _check_one_line_error(result, "teacher.path: ", str(onnx_file.with_suffix(".json")), needle)
    assert not out.exists()  # refused by the check before the run


@pytest.mark.parametrize("name", ["fotos_ü", "写真", "photos (2024)", "it's #1"])
def test_a_path_hydra_reads_only_quoted_gets_the_quoting_that_works(tmp_path, name):
    import shlex

    from hydra import compose, initialize_config_dir

    from distill import config_dir

    root = tmp_path / name
    out = tmp_path / "outputs"
    result = run_cli("teacher", "dataset=imagefolder", f"dataset.root={root}", f"paths.root={out}", cwd=tmp_path)
    _check_one_line_error(result, f"dataset.root={root}: quote the value for Hydra inside the shell's quotes: ")
    assert not out.exists()
    override = shlex.split(result.stderr.split("inside the shell's quotes: ", 1)[1])[0]  # what the shell passes on
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="teacher", overrides=["dataset=imagefolder", override])
    assert cfg.dataset.root == str(root)


def test_the_suggested_quoting_trains_and_spaces_need_none(tmp_path):
    root = _image_folder(tmp_path / "fotos_ü")
    out = tmp_path / "outputs"
    fast = ["teacher=mlp", "trainer.epochs=1", "trainer.progress=off", "trainer.threads=2", f"paths.root={out}",
            "dataset.image_size=16"]  # fmt: skip
    result = run_cli("teacher", "dataset=imagefolder", f'dataset.root="{root}"', *fast, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list(out.rglob("summary.json"))) == 1
    # Spaces are fine unquoted for Hydra (the shell's quotes suffice): the value reaches the builder whole.
    spaced = tmp_path / "my photos"
    (spaced / "train").mkdir(parents=True)
    (spaced / "val").mkdir()
    result = run_cli("teacher", "dataset=imagefolder", f"dataset.root={spaced}", *fast, cwd=tmp_path)
    _check_one_line_error(result, f"no class folders in {spaced / 'train'}")


def test_the_comma_in_a_path_gets_the_quoting_that_works(tmp_path):
    root = tmp_path / "a,b"
    result = run_cli("teacher", "dataset=imagefolder", f"dataset.root={root}", cwd=tmp_path)
    _check_one_line_error(result, f"dataset.root={root}: Hydra reads the commas as values to sweep over", f'"{root}"')


def test_the_printed_quoting_works_in_a_real_shell(tmp_path):
    """Through bash and a new process: the line's suggestion, pasted as printed, gives Hydra the path."""
    import shlex
    import subprocess
    import sys

    root = tmp_path / "fotos_ü"
    result = run_cli("teacher", "dataset=imagefolder", f"dataset.root={root}", cwd=tmp_path)
    suggested = result.stderr.split("inside the shell's quotes: ", 1)[1].rsplit(" (", 1)[0].strip()
    command = f"{shlex.quote(sys.executable)} -m distill teacher dataset=imagefolder {suggested} --cfg job"
    shown = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert f"root: {root}\n" in shown.stdout, shown.stdout
