"""Property-based fuzzing: any config override and any damaged checkpoint is handled in one line.

Handled means: a config override is accepted or refused with exit code 2 and one line on stderr
(never another exception); a truncated or bit-flipped weights or state file is refused with a
UserError or, if the damage left its contents intact, loads exactly what was saved.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from distill import config_dir
from distill.cli import precheck
from distill.config.overrides import flat_keys
from distill.engine.checkpoint import load_model, load_state, save_state, save_weights
from distill.errors import UserError
from distill.models.registry import build_model
from distill.models.spec import ModelSpec

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
COUNTS: dict[str, dict[str, int]] = {}


def _leaf_keys(stage: str) -> list[str]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name=stage)
    GlobalHydra.instance().clear()
    keys = flat_keys(cfg)
    return sorted(k for k in keys if not any(o.startswith(k + ".") for o in keys))


TRAIN_KEYS = _leaf_keys("train")
scalars = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["null", "???", "[]", "{}", "[1,2]", "abc", "-1", "0", "1e-9", "${x}", "'q'", "a,b", "auto"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)
keys = st.one_of(
    st.sampled_from(TRAIN_KEYS),
    st.sampled_from(["teacher", "student", "dataset", "distill", "optim", "sched", "trainer", "cache"]),
    st.sampled_from(TRAIN_KEYS).map(lambda k: k[:-1] + "x"),  # a near miss
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz._", min_size=1, max_size=20),
)


def _override(key: str, value) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{key}={text}"


@FUZZ
@given(overrides=st.lists(st.builds(_override, keys, scalars), min_size=1, max_size=3))
# besides the generated cases: the keys that name or trust code, each value a sound one
@example(overrides=["student._target_=null", "trust_code=false"])
@example(overrides=["trust_code=[distill.models.cifar.resnet8x4]", "seed=3"])
@example(overrides=["student=custom", "student._target_=distill.models.cifar.resnet8x4"])
@example(overrides=["teacher._target_=distill.models.small.lenet5", "trust_code=true"])
def test_any_config_override_is_accepted_or_refused_in_one_line(overrides):
    err = io.StringIO()
    GlobalHydra.instance().clear()
    with contextlib.redirect_stderr(err):
        try:
            precheck("train", overrides)
            outcome = "accepted"
        except SystemExit as e:
            assert e.code == 2, (overrides, e.code)
            lines = err.getvalue().strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("distill train: error: "), (overrides, lines)
            outcome = "refused"
    COUNTS.setdefault("config overrides", {}).setdefault(outcome, 0)
    COUNTS["config overrides"][outcome] += 1


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    spec = ModelSpec("lenet5", 10, 1, [8, 8], [0.5], [0.25], [str(i) for i in range(10)])
    torch.manual_seed(0)
    model = build_model("lenet5", 10, 1, (8, 8), (0.5,), (0.25,))
    weights = save_weights(root / "w.safetensors", model, spec, {"seed": 0})
    state = {"format": "distill-state", "epoch": 3, "model": model.state_dict(), "metrics": ['{"a": 1}']}
    state_file = save_state(root / "state.pt", state)
    return {"weights": weights.read_bytes(), "state": state_file.read_bytes(), "model": model, "root": root}


damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
)


def _damaged(data: bytes, how) -> bytes:
    kind, arg = how
    if kind == "truncate":
        return data[: int(arg * len(data))]
    if kind == "append":
        return data + arg
    out = bytearray(data)
    for where, bit in arg:
        out[int(where * len(out))] ^= 1 << bit
    return bytes(out)


def _count(kind: str, outcome: str) -> None:
    COUNTS.setdefault(kind, {}).setdefault(outcome, 0)
    COUNTS[kind][outcome] += 1


@FUZZ
@given(how=damage)
def test_a_damaged_weights_file_is_refused_or_loads_intact(saved, how):
    path: Path = saved["root"] / "damaged.safetensors"
    path.write_bytes(_damaged(saved["weights"], how))
    try:
        model, *_ = load_model(path)
    except UserError as e:
        assert "\n" not in str(e)
        return _count("weights files", "refused")
    original = saved["model"].state_dict()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items()), how
    _count("weights files", "loaded intact")


@FUZZ
@given(how=damage)
def test_a_damaged_state_file_is_refused_or_loads_intact(saved, how):
    path: Path = saved["root"] / "damaged.pt"
    path.write_bytes(_damaged(saved["state"], how))
    try:
        state = load_state(path)
    except UserError as e:
        assert "\n" not in str(e)
        return _count("state files", "refused")
    original = saved["model"].state_dict()
    assert state["epoch"] == 3 and state["metrics"] == ['{"a": 1}'], how
    assert all(torch.equal(v, original[k]) for k, v in state["model"].items()), how
    _count("state files", "loaded intact")


def test_the_fuzzers_saw_both_outcomes():
    """Each fuzzer ran its examples and met inputs of both kinds: one whose cases were all accepted (or
    all refused) would test one side only. Prints the counts (pytest -s shows them)."""
    if len(COUNTS) < 3:
        pytest.skip("reads what the three fuzzers above counted: run with them")
    for kind, outcomes in COUNTS.items():
        print(f"fuzz {kind}: {sum(outcomes.values())} cases, " + ", ".join(f"{k} {v}" for k, v in outcomes.items()))
    overrides = COUNTS["config overrides"]
    assert sum(overrides.values()) >= 100 and min(overrides.get("accepted", 0), overrides.get("refused", 0)) >= 10
    for kind in ("weights files", "state files"):
        assert sum(COUNTS[kind].values()) >= 100 and COUNTS[kind].get("refused", 0) >= 50, COUNTS[kind]
