"""The CIFAR-100 benchmark recipes (``conf/experiment/cifar100_*``) and ``scripts/cifar100_table.py``.

Every recipe composes with CRD's published settings for both stages; the script's own commands run
through the CLI for an epoch on a tiny CIFAR-100 written in torchvision's on-disk format (one pair,
two methods by default; every pair and method under ``-m slow``), and its table reads the runs back.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from distill import api
from tests.conftest import FAST, run_cli

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cifar100_table.py"
PAIRS = {"resnet32x4_resnet8x4": ("resnet32x4", "resnet8x4"), "wrn_40_2_wrn_16_2": ("wrn_40_2", "wrn_16_2"),
         "vgg13_vgg8": ("vgg13", "vgg8")}  # fmt: skip
METHODS = ("kd", "dkd", "dist", "crd")
DKD_BETA = {"resnet32x4_resnet8x4": 8.0, "wrn_40_2_wrn_16_2": 6.0, "vgg13_vgg8": 6.0}  # mdistiller's configs
FAST_CASES = [("vgg13_vgg8", "dkd"), ("vgg13_vgg8", "crd")]  # the cheapest pair; logits and features
SLOW_CASES = [(p, m) for p in PAIRS for m in ("alone", *METHODS) if (p, m) not in FAST_CASES]


def _script():
    spec = importlib.util.spec_from_file_location("cifar100_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


table_script = _script()


def write_cifar100(root: Path, train: int, test: int, seed: int = 0) -> dict:
    """Writes ``root/cifar-100-python/{train,test,meta}`` as torchvision's pickles (random 32x32 images,
    labels cycling over the 100 classes); returns the ``train_list``, ``test_list`` and ``meta`` that
    ``torchvision.datasets.CIFAR100`` must hold to accept these files (it checks their MD5 sums)."""
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(seed)

    def batch(name: str, n: int) -> list[str]:
        x = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = [i % 100 for i in range(n)]
        (base / name).write_bytes(
            pickle.dumps({"data": x, "fine_labels": labels, "coarse_labels": [i // 5 for i in labels]})
        )
        return [name, hashlib.md5((base / name).read_bytes()).hexdigest()]

    lists = {"train_list": [batch("train", train)], "test_list": [batch("test", test)]}
    (base / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"class {i}" for i in range(100)]}))
    meta = {"filename": "meta", "key": "fine_label_names", "md5": hashlib.md5((base / "meta").read_bytes()).hexdigest()}
    return {**lists, "meta": meta}


@pytest.fixture(scope="session")
def tiny_cifar100(tmp_path_factory) -> tuple[Path, dict]:
    """64 training and 32 test images: one batch of the recipe's 64 per epoch (the val split takes 2)."""
    root = tmp_path_factory.mktemp("cifar100")
    return root, write_cifar100(root, train=64, test=32)


def _accept(monkeypatch: pytest.MonkeyPatch, lists: dict) -> None:
    import torchvision

    for name, value in lists.items():
        monkeypatch.setattr(torchvision.datasets.CIFAR100, name, value)


@pytest.fixture
def cifar100(tiny_cifar100, monkeypatch) -> Path:
    """The tiny CIFAR-100's root, which torchvision accepts for this test."""
    root, lists = tiny_cifar100
    _accept(monkeypatch, lists)
    return root


def _args(out: Path, data: Path, pair: str, rows: list[str]):
    """The script's options for one-epoch runs of ``rows`` of ``pair`` on the tiny data, on 2 threads."""
    given = ["--pairs", pair, "--methods", ",".join(rows), "--epochs", "1", "--out", str(out), "--data", str(data)]
    # the teacher in torch: auto would time onnxruntime against it first (2 s a run on 2 cores)
    return table_script.parse_args([*given, "--no-download", *FAST, "trainer.teacher_backend=torch"])


@pytest.fixture(scope="session")
def teacher_runs(tiny_cifar100, tmp_path_factory):
    """The script's teacher run of a pair, trained (one epoch, through the CLI) once for the session."""
    root, lists = tiny_cifar100
    out = tmp_path_factory.mktemp("cifar100_table")
    done: dict[str, Path] = {}

    def get(pair: str) -> Path:
        if pair not in done:
            (job,) = [j for j in table_script.jobs(_args(out, root, pair, ["kd"])) if j.row == "teacher"]
            with pytest.MonkeyPatch.context() as mp:
                _accept(mp, lists)
                ran = run_cli(job.stage, *job.args, cwd=out)
            assert ran.returncode == 0, ran.stderr[-2000:]
            done[pair] = job.run_dir
        return done[pair]

    get.out = out
    return get


# --- composition: the published settings --------------------------------------------------------


def _recipe(cfg) -> dict:
    return {
        "dataset": cfg.dataset._target_.rsplit(".", 1)[-1],
        "augment": cfg.dataset.augment,
        "epochs": cfg.trainer.epochs,
        "batch_size": cfg.trainer.batch_size,
        "optim": (cfg.optim._target_, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.nesterov),
        "sched": (cfg.sched._target_.rsplit(".", 1)[-1], list(cfg.sched.milestones), cfg.sched.gamma),
        "warmup_epochs": cfg.sched.warmup_epochs,
        "grad_clip": cfg.trainer.grad_clip,
    }


CRD_RECIPE = {
    "dataset": "cifar100",
    "augment": "crop_flip",
    "epochs": 240,
    "batch_size": 64,
    "optim": ("torch.optim.SGD", 0.05, 0.9, 5e-4, False),
    "sched": ("warmup_multistep", [150, 180, 210], 0.1),
    "warmup_epochs": 0,
    "grad_clip": None,
}


def test_the_teacher_stage_takes_crds_recipe():
    """conf/teacher.yaml's own recipe (20 epochs, cosine, 2 warm-up epochs) gives way to the experiment's."""
    cfg = api.compose("teacher", ["experiment=cifar100_recipe", "teacher=resnet32x4"])
    assert _recipe(cfg) == CRD_RECIPE and cfg.teacher.name == "resnet32x4"
    assert cfg.dataset.val_fraction == 0.02  # 49,000 of the 50,000 training images train


@pytest.mark.parametrize("pair", list(PAIRS))
@pytest.mark.parametrize("method", METHODS)
def test_each_pair_and_method_composes_with_the_published_settings(pair, method):
    cfg = api.compose("train", [f"experiment=cifar100_{pair}_{method}"])
    assert _recipe(cfg) == CRD_RECIPE
    assert (cfg.teacher.name, cfg.student.name) == PAIRS[pair] and cfg.teacher.checkpoint is None
    d = cfg.distill
    got = {"alpha": d.alpha, **({"method": dict(d.method)} if d.method is not None else {"T": d.temperature})}
    want = {
        "kd": {"alpha": 0.9, "T": 4.0},  # CE 0.1 + KD 0.9 at T 4 (RepDistiller, mdistiller)
        "dkd": {"alpha": 0.0, "method": {"_target_": "distill.losses.dkd.DKD", "alpha": 1.0, "beta": DKD_BETA[pair],
                                         "temperature": 4.0, "warmup_epochs": 20}},
        "dist": {"alpha": 0.0, "method": {"_target_": "distill.losses.dist.DIST", "beta": 2.0, "gamma": 2.0,
                                          "temperature": 4.0}},
        "crd": {"alpha": 0.0, "method": {"_target_": "distill.losses.crd.CRD", "feat_dim": 128, "nce_k": 16384,
                                         "nce_t": 0.07, "momentum": 0.5, "weight": 0.8}},
    }[method]  # fmt: skip
    assert got == want
    assert d.beta == (0.0 if method == "kd" else 1.0) and d.loss == "kl"


@pytest.mark.parametrize("pair", list(PAIRS))
def test_a_pair_alone_is_the_models_and_the_recipe(pair):
    cfg = api.compose("train", [f"experiment=cifar100_{pair}", "distill.alpha=0"])
    assert _recipe(cfg) == CRD_RECIPE and (cfg.teacher.name, cfg.student.name) == PAIRS[pair]
    assert cfg.distill.method is None and cfg.distill.alpha == 0


def test_the_scripts_full_commands_compose_to_the_published_recipe(tmp_path):
    """Without --epochs, every command of the table is the 240-epoch recipe, with the download and
    device asked for; with --epochs the milestones and DKD's warm-up shrink with the budget."""
    plan = table_script.jobs(table_script.parse_args(["--out", str(tmp_path), "--device", "cuda"]))
    assert [(j.pair, j.row) for j in plan[:6]] == [("resnet32x4_resnet8x4", r) for r in table_script.ROWS]
    assert len(plan) == 18 and len({j.run_dir for j in plan}) == 18
    assert all("dataset.download=true" in j.args and "trainer.device=cuda" in j.args for j in plan)
    for job in plan[:6]:  # the other pairs' commands differ only in their names
        overrides = [a for a in job.args if not a.startswith("hydra.")]
        # commands for a CUDA machine (trainer.device=cuda): composed without this machine's checks
        assert _recipe(api.compose(job.stage, overrides, check=False)) == CRD_RECIPE, job.command()
    trial = table_script.jobs(table_script.parse_args(["--epochs", "24", "--pairs", "vgg13_vgg8", "--methods", "dkd"]))
    assert "sched.milestones=[15,18,21]" in trial[1].args and "distill.method.warmup_epochs=2" in trial[1].args
    assert str(trial[1].run_dir).startswith("outputs/cifar100_table_24ep")


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "table"
    assert table_script.main(["--dry-run", "--pairs", "wrn_40_2_wrn_16_2", "--methods", "crd", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("distill teacher experiment=cifar100_recipe teacher=wrn_40_2 ")
    assert lines[1].startswith(
        f"distill train experiment=cifar100_wrn_40_2_wrn_16_2_crd teacher.checkpoint={out}/teacher/wrn_40_2 "
    )
    assert len(lines) == 2 and not out.exists()


def test_the_table_puts_each_run_beside_its_published_figure(tmp_path):
    plan = table_script.jobs(table_script.parse_args(["--out", str(tmp_path), "--pairs", "vgg13_vgg8"]))
    for job, acc in zip(plan[:3], (0.7512, 0.7, 0.73)):  # teacher, alone, kd finished; the rest not yet
        job.run_dir.mkdir(parents=True)
        (job.run_dir / "summary.json").write_text(json.dumps({"test_acc": acc, "last_test_acc": acc - 0.001}))
    rows = {line.split(" | ")[1]: line for line in table_script.table(plan).splitlines()[2:]}
    assert (
        rows["teacher"] == "| vgg13_vgg8 | teacher | vgg13 | 75.12 | 75.02 | 74.64 | +0.48 | " + table_script.CRD + " |"
    )
    assert " | kd | vgg8 | 73.00 | 72.90 | 72.98 | +0.02 | " in rows["kd"]
    assert " | dkd | vgg8 | - | - | 74.68 | - | " in rows["dkd"] and "mdistiller" in rows["dkd"]
    assert " | dist | vgg8 | - | - | - | - | not published for this pair |" in rows["dist"]


# --- one epoch of each recipe, as the script runs it --------------------------------------------


def _run_case(pair: str, row: str, teacher_runs, data: Path):
    teacher = teacher_runs(pair)
    (job,) = [j for j in table_script.jobs(_args(teacher_runs.out, data, pair, [row])) if j.row == row]
    ran = run_cli(job.stage, *job.args, cwd=teacher_runs.out)
    assert ran.returncode == 0, ran.stderr[-2000:]
    summary = json.loads((job.run_dir / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["student"] == PAIRS[pair][1] and summary["dataset"] == "cifar100"
    assert summary["method"] == {"alone": None, "kd": None, "dkd": "DKD", "dist": "DIST", "crd": "CRD"}[row]
    if row == "alone":
        assert summary["teacher_weights"] is None  # the teacher is not run
    else:
        assert Path(summary["teacher_weights"]).parent.parent == teacher.resolve()
        assert summary["alpha"] == (0.9 if row == "kd" else 0.0)
    assert 0 <= summary["test_acc"] <= 1
    config = yaml.safe_load((job.run_dir / "config.yaml").read_text())
    assert config["sched"]["milestones"] == [1, 1, 1] and config["trainer"]["batch_size"] == 64  # a scaled trial
    return job


@pytest.mark.parametrize(("pair", "row"), FAST_CASES)
def test_a_pair_and_method_runs_an_epoch_as_the_script_runs_it(pair, row, teacher_runs, cifar100):
    job = _run_case(pair, row, teacher_runs, cifar100)
    line = next(x for x in table_script.table([job]).splitlines() if f"| {row} |" in x)
    assert line.split(" | ")[3] != "-"  # the table read the run back


@pytest.mark.slow
@pytest.mark.parametrize(("pair", "row"), SLOW_CASES)
def test_every_pair_and_method_runs_an_epoch(pair, row, teacher_runs, cifar100):
    _run_case(pair, row, teacher_runs, cifar100)
