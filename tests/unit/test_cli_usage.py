"""Daily use of the command line, in this process: a stage's help, ``distill models``, an argparse habit
refused with the override to write, tab completion, and what help and the model names are read from."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys

import pytest

from tests.conftest import run_cli


def test_help_lists_groups_and_each_key_with_its_default_and_meaning(tmp_path):
    shown = run_cli("train", "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("distill train: distil a teacher into a student")
    # a key, its default and the comment of conf/trainer/default.yaml (continued lines of kd_term.yaml too)
    device = next(ln for ln in lines if ln.strip().startswith("trainer.device="))
    assert device.split() == ["trainer.device=auto", "auto", "|", "cpu", "|", "cuda"]
    temperature = shown.stdout[shown.stdout.index("distill.temperature=4.0") :]
    assert "T of the logit-KD term" in " ".join(temperature.split()[:12])
    assert any(ln.strip().startswith("trust_code=false") and "your own code" in ln for ln in lines)
    # the groups of this stage with their options; the torchvision models counted, not listed
    groups = " ".join(shown.stdout[shown.stdout.index("config groups") : shown.stdout.index("keys (")].split())
    assert "distill=kd" in groups and "dkd" in groups and "student=mlp" in groups
    assert re.search(r"\d+ shipped and \d+ torchvision models: `distill models`", groups)
    assert "regnet_y_400mf" not in groups
    assert "compress" not in groups, "the compare stage's group is not train's"
    assert not (tmp_path / "outputs").exists()


def test_help_shows_the_config_the_overrides_compose(tmp_path):
    shown = run_cli("train", "distill=dkd", "--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "distill.method.warmup_epochs=20" in shown.stdout and "distill=dkd" in shown.stdout
    refused = run_cli("train", "distill=dkdd", "--help", cwd=tmp_path)
    assert refused.returncode == 2 and "unknown distill 'dkdd'" in refused.stderr


@pytest.mark.parametrize(
    ("args", "meant"),
    [
        (["--epochs", "3"], "did you mean trainer.epochs=3?"),
        (["--epochs=3"], "did you mean trainer.epochs=3?"),
        (["--batch-size", "128", "--compile"], "did you mean trainer.batch_size=128 trainer.compile=true?"),
        (["--student", "mobilenet"], "did you mean student=mobilenet?"),
        (["--epohcs", "3"], "--epohcs 3 (not a config key (did you mean 'epochs'"),
    ],
)
def test_an_argparse_habit_is_refused_with_the_override_to_write(tmp_path, args, meant):
    refused = run_cli("train", *args, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"distill train: error: {' '.join(args)}: distill takes KEY=VALUE")
    assert meant in refused.stderr


def test_two_of_hydras_modes_at_once_are_one_line(tmp_path):
    refused = run_cli("train", "-m", "seed=0,1", "--cfg", "job", cwd=tmp_path)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines() == [
        "distill train: error: --cfg and -m cannot be given together: Hydra does one of them per command"
    ]


def test_models_lists_the_shipped_and_torchvision_models(tmp_path):
    every = run_cli("models", cwd=tmp_path)
    assert every.returncode == 0
    assert "  mlp " in every.stdout and "Hinton's MNIST student" in every.stdout
    assert "regnet_y_400mf" in every.stdout and "onnx" in every.stdout
    some = run_cli("models", "mobile", cwd=tmp_path)
    assert "mobilenet_v3_small" in some.stdout and "resnet18" not in some.stdout


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("distill tr", ["train"]),
        ("distill ", ["cache", "chain", "compare", "eval", "export", "inspect", "models", "teacher", "train"]),
        ("distill train stu", ["student.", "student="]),
        ("distill train student=mob", ["student=mobilenet", "student=mobilenet_v2"]),
        ("distill train distill.temp", ["distill.temperature=", "distill.temperature_end="]),
        ("distill train --hy", ["--hydra-help"]),
    ],
)
def test_completion_answers_the_line_typed(tmp_path, monkeypatch, line, offered):
    monkeypatch.setenv("COMP_LINE", line)
    answered = run_cli("-sc", "query=bash", cwd=tmp_path)
    assert answered.returncode == 0, answered.stderr
    words = answered.stdout.split()
    assert all(word in words for word in offered), words
    if line == "distill tr":
        assert words == ["train"]


def test_completion_installs_for_the_command_distill(tmp_path):
    script = run_cli("train", "-sc", "install=bash", cwd=tmp_path)
    assert script.returncode == 0, script.stderr
    assert script.stdout.rstrip().endswith("-F hydra_bash_completion distill")
    assert "query=bash" in script.stdout
    bad = run_cli("-sc", "install=tcsh", cwd=tmp_path)
    assert bad.returncode == 2 and "install=SHELL" in bad.stderr


def test_comments_give_the_meaning_of_keys():
    from distill.config.comments import header, key_comments

    text = "\n".join(
        [
            "# What this file is.",
            "first: 1",
            "size: 2         # the size",
            "layers: []      # layers a method reads (the",
            "other: []       #   same text goes on)",
            "",
            "# above the key",
            "node:",
            "  inner: x      # nested",
            "  spread: 3     # one line",
            "                # and the next",
        ]
    )
    assert key_comments(text) == {
        "size": "the size",
        "layers": "layers a method reads (the same text goes on)",
        "other": "layers a method reads (the same text goes on)",
        "node": "above the key",
        "node.inner": "nested",
        "node.spread": "one line and the next",
    }
    assert header(text) == "What this file is."


def test_model_names_are_read_again_for_another_torchvision(tmp_path, monkeypatch):
    from distill.models import names

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reads = []
    monkeypatch.setattr(names, "_read_library", lambda: reads.append(1) or ["alexnet", "resnet18"])
    assert names.torchvision_names() == ["alexnet", "resnet18"] and len(reads) == 1
    (kept,) = (tmp_path / "distill").glob("torchvision_models-*.json")
    key = json.loads(kept.read_text())["key"]
    assert key.startswith(importlib.metadata.version("torchvision") + " ") and kept == names.cache_file(key)
    # the list kept is what is read while the library is the same one ...
    kept.write_text(json.dumps({"key": key, "names": ["kept"]}))
    assert names.torchvision_names() == ["kept"] and len(reads) == 1
    kept.write_text("{not json")  # (a damaged file is read again)
    assert names.torchvision_names() == ["alexnet", "resnet18"] and len(reads) == 2
    # ... and is read again from the library for another version or install, which keeps its own
    monkeypatch.setattr(names, "_library_key", lambda: "0.0.1 /elsewhere 0")
    assert names.torchvision_names() == ["alexnet", "resnet18"] and len(reads) == 3
    assert len(list((tmp_path / "distill").glob("*.json"))) == 2


def test_a_typod_value_is_refused_before_torch_is_imported():
    """The quick checks (distill.choices) need no torch: a wrong choice or number in any job of a
    sweep is refused in a fresh interpreter without importing it."""
    code = (
        "import sys; from distill import cli\n"
        "try:\n    cli.main(['train', '-m', 'trainer.device=cpu,cpuu'])\n"
        "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "trainer.device='cpuu' is not one of auto, cpu, cuda (did you mean 'cpu'?)" in done.stderr


def test_the_quick_tables_match_the_modules_that_act_on_them():
    from distill.choices import LOSS_KINDS
    from distill.losses.kd import SOFT_TERMS

    assert set(LOSS_KINDS) == set(SOFT_TERMS)
