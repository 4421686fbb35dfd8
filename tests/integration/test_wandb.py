"""Runs reported to Weights & Biases in its offline mode, read back from the offline run's own file.

wandb (0.31) has no reader of offline runs (its public API reads the server); the ``.wandb`` file
is a log of wandb's protobuf ``Record`` messages in LevelDB's log framing (32 KiB blocks, records
split into FULL/FIRST/MIDDLE/LAST pieces behind a 7-byte header: CRC-32, length, type), read here
with wandb's own message classes and every piece's checksum verified.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from distill import api
from distill.engine.loggers import check_available
from tests.conftest import FAST, read_metrics, run_cli

TINY = ["student=mlp", "student.kwargs.hidden=[32]", "trainer.epochs=2", "distill.alpha=0", *FAST]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """wandb offline, its caches and settings under the test's folder."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))


def _records(path: Path):
    """wandb's ``Record`` messages of an offline run's ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    raw = path.read_bytes()
    assert raw[:4] == b":W&B", path
    pos, block, pieces = 7, 32768, b""
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        data = raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:  # padding
            continue
        assert zlib.crc32(data, zlib.crc32(bytes([kind]))) == crc, f"{path}: damaged record at {pos}"
        pieces += data
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            pieces = b""
            yield record


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def read_offline_run(run_dir: Path) -> dict:
    """The offline W&B run under a distill run folder: its group, job type, name, config, history
    (a dict per logged step) and final summary."""
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    out: dict = {"config": {}, "history": [], "summary": {}}
    for record in _records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(group=run.run_group, job_type=run.job_type, name=run.display_name, project=run.project)
            out["config"].update({u.key: json.loads(u.value_json) for u in run.config.update})
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({_key(u): json.loads(u.value_json) for u in record.summary.update})
    return out


def test_a_run_logs_to_wandb_offline_read_back_from_its_file(tmp_path, offline):
    summary = api.run("train", [*TINY, "logger=wandb", f"paths.root={tmp_path / 'out'}"])
    (run_dir,) = [p.parent for p in (tmp_path / "out" / "train").glob("*/*/summary.json")]
    got = read_offline_run(run_dir)
    info = summary["loggers"]["wandb"]
    assert info["offline"] and info["group"] is None and got["project"] == info["project"] == "distill"
    assert got["job_type"] == "train" and got["group"] == "" and got["name"] == run_dir.name
    assert got["config"]["distill"]["temperature"] == 4.0 and got["config"]["student"]["name"] == "mlp"
    rows = read_metrics(run_dir)
    assert [h["_step"] for h in got["history"]] == [r["epoch"] for r in rows] == [1, 2]
    assert [h["val_acc"] for h in got["history"]] == pytest.approx([r["val_acc"] for r in rows])
    assert got["summary"]["test_acc"] == pytest.approx(summary["test_acc"])


@pytest.mark.slow  # two wandb runs in a sweep through the CLI: ~7 s on 2 cores
def test_the_members_of_a_sweep_share_a_wandb_group(tmp_path, offline):
    sweep = tmp_path / "sweep"
    done = run_cli("train", "-m", *TINY, "logger=wandb", "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    members = [read_offline_run(sweep / str(i)) for i in (0, 1)]
    assert [m["config"]["seed"] for m in members] == [0, 1]
    assert [m["name"] for m in members] == ["job 0", "job 1"]
    assert members[0]["group"] == members[1]["group"] == f"train sweep {sweep.parent.name}/{sweep.name}"
    assert all(len(m["history"]) == 2 for m in members)


def test_without_wandb_the_logger_names_its_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert check_available(["csv", "wandb"]) == ["logger=wandb needs the wandb package: pip install 'distill[wandb]'"]
