"""``distill cache ls | verify | clear``: see, check and free the teacher output cache (and the
teachers exported for onnxruntime, in its ``onnx/`` folder).

``verify`` re-derives every entry's inputs (the teacher file's digest, the training images'
digest) and recomputes random rows with the live teacher on the regenerated views: a mismatch
means the entry is stale or corrupt. A damaged entry (a file missing, truncated or disagreeing with
its ``meta.json``) is listed as such, fails ``verify`` and is removed by ``clear`` like any other;
so are the temporary folders of killed builds (never those of a build still running).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from distill.config.checks import raise_if
from distill.config.entry import hydra_entry
from distill.data.stored import build_stored_dataset
from distill.data.streaming import STREAMED, LazyImages
from distill.engine.cache import (
    DamagedEntry,
    cache_dir_problem,
    clear_unfinished,
    discard,
    file_digest,
    images_digest,
    key_drift,
    list_entries,
    list_unfinished,
    open_entry,
    view_rows,
)
from distill.engine.checkpoint import read_weights, spec_of
from distill.engine.tables import print_table
from distill.engine.taps import Taps
from distill.errors import UserError
from distill.models.spec import build_loaded

ACTIONS = ("ls", "verify", "clear")


def validate(cfg: DictConfig) -> None:
    errors = []
    if cfg.action not in ACTIONS:
        errors.append(f"action={cfg.action!r} must be one of {', '.join(ACTIONS)}")
    if not isinstance(cfg.rows, int) or cfg.rows < 1:
        errors.append(f"rows must be a whole number >= 1, got {cfg.rows!r}")
    folder = Path(str(cfg.dir))
    # ls and verify only read (a teammate's read-only cache is fine); clear must delete, where there is a folder
    problem = cache_dir_problem(folder, write=cfg.action == "clear" and folder.is_dir(), name="dir")
    if problem:
        errors.append(problem)
    raise_if(errors)


def _selected(cfg: DictConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The entries ``cfg.entry`` selects (all when null), and the unfinished builds of those keys."""
    prefix = "" if cfg.entry is None else str(cfg.entry)
    rows = [r for r in list_entries(Path(str(cfg.dir))) if r["path"].name.startswith(prefix)]
    unfinished = [u for u in list_unfinished(Path(str(cfg.dir))) if u["key"].startswith(prefix)]
    if prefix and not rows and not unfinished:
        raise UserError(f"no cache entry starts with {cfg.entry!r} in {cfg.dir}; `distill cache ls` lists them")
    return rows, unfinished


def _exported(cfg: DictConfig) -> list[Path]:
    """Teachers exported for onnxruntime (``trainer.teacher_backend``), kept beside the entries."""
    return sorted(p for p in (Path(str(cfg.dir)) / "onnx").glob("*") if p.is_file())


def _load_teacher(path: Path) -> torch.nn.Module:
    if path.suffix == ".onnx":
        from distill.models.onnx_teacher import OnnxTeacher

        return OnnxTeacher(path)
    tensors, meta = read_weights(path)
    spec = spec_of(meta, path)
    if spec is None:
        raise UserError(f"{path} carries no model description")
    model = build_loaded(spec, tensors, path)
    return model.eval()


def _verify(row: dict[str, Any], n_rows: int, tolerance: float, seed: int) -> tuple[str, float | None]:
    if row["problem"]:
        return f"damaged: {row['problem']}", None
    meta, key = row["meta"], row["meta"]["key"]
    drift = key_drift(key)
    if drift:  # its key names another install: no run of this one reads it
        return f"stale: {drift}", None
    teacher_path = Path(meta.get("teacher_path", ""))
    if not teacher_path.is_file():
        return f"stale: teacher file {teacher_path} is gone", None
    if file_digest(teacher_path) != key["teacher"]:
        return f"stale: {teacher_path} changed since the entry was built", None
    data = build_stored_dataset(key["dataset"], f"{row['path'] / 'meta.json'}: key.dataset")
    streamed_now, streamed_then = isinstance(data.train_x, LazyImages), key["augment"] == STREAMED
    if streamed_now != streamed_then and key["augment"] != "none":  # other views: cropped from files or tensors
        how = "now stream from their files" if streamed_now else "are now held in memory"
        return f"stale: the dataset's images {how} (dataset.in_memory)", None
    if images_digest(data.train_x) != key["images"]:
        return "stale: the dataset's training images changed", None
    try:
        entry = open_entry(row["path"])
    except DamagedEntry as e:  # damaged since it was listed
        return f"damaged: {e}", None
    if entry is None:
        return "gone: removed while verify ran", None
    teacher = _load_teacher(teacher_path)
    rng = np.random.default_rng(seed)
    worst = 0.0
    with torch.no_grad(), Taps(teacher, key["taps"]) as taps:
        for k in sorted({int(v) for v in rng.integers(entry.num_views, size=min(n_rows, 4))}):
            idx = np.sort(rng.choice(len(data.train_y), size=min(n_rows, len(data.train_y)), replace=False))
            view = view_rows(data.train_x, key["augment"], k, key["seed"], idx)
            live = teacher(view.float() / 255)
            feats = taps.take() if key["taps"] else []
            worst = max(worst, float((live - torch.from_numpy(entry.logits[k][idx]).float()).abs().max()))
            for j, f in enumerate(feats):
                worst = max(worst, float((f - torch.from_numpy(entry.feats[j][k][idx]).float()).abs().max()))
    return ("ok" if worst <= tolerance else f"MISMATCH (> {tolerance})"), worst


def _ls(cfg: DictConfig, rows: list[dict[str, Any]], unfinished: list[dict[str, Any]]) -> dict[str, Any]:
    table = []
    for r in rows:
        meta, key = r["meta"], r["meta"].get("key", {})
        table.append(
            [
                r["path"].name,
                "ok" if r["problem"] is None else f"damaged: {r['problem']}",
                Path(meta.get("teacher_path", "?")).parent.parent.name or "?",
                meta.get("dataset", "?"),
                key.get("augment", "?"),
                key.get("views", "?"),
                meta.get("num_images", "?"),
                len(key["taps"]) if "taps" in key else "?",
                round(r["bytes"] / 1e6, 2),
                time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])),
            ]
        )
    for u in unfinished:  # a live build is being written; the others were left by a killed build
        status = "being built" if u["live"] else "unfinished build (clear removes it)"
        table.append([u["path"].name, status, *["-"] * 6, round(u["bytes"] / 1e6, 2), "-"])
    damaged = sum(r["problem"] is not None for r in rows)
    if table:
        print_table(
            f"teacher cache {cfg.dir}: {len(rows)} entries ({damaged} damaged), {len(unfinished)} unfinished builds, "
            f"{(sum(r['bytes'] for r in rows) + sum(u['bytes'] for u in unfinished)) / 1e6:.1f} MB",
            ("key", "status", "teacher run", "dataset", "augment", "views", "images", "taps", "MB", "last used"),
            table,
        )
    else:
        print(f"teacher cache {cfg.dir}: no entries")
    exported = _exported(cfg)
    if exported:
        mb = sum(f.stat().st_size for f in exported) / 1e6
        print(f"and {len(exported)} teachers exported for onnxruntime, {mb:.1f} MB, in {Path(str(cfg.dir)) / 'onnx'}")
    return {"entries": len(rows), "damaged": damaged, "unfinished": len(unfinished), "exported": len(exported)}


def _clear(cfg: DictConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    freed = sum(r["bytes"] for r in rows)
    for r in rows:
        discard(r["path"])
    leftovers, leftover_bytes = clear_unfinished(Path(str(cfg.dir)), "" if cfg.entry is None else str(cfg.entry))
    exported = _exported(cfg) if cfg.entry is None else []
    freed += leftover_bytes + sum(f.stat().st_size for f in exported)
    for f in exported:
        f.unlink()
    print(
        f"removed {len(rows)} cache entries, {leftovers} unfinished builds and {len(exported)} exported teachers, "
        f"{freed / 1e6:.1f} MB freed"
    )
    return {"removed": len(rows), "unfinished_removed": leftovers, "exported_removed": len(exported), "bytes": freed}


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    rows, unfinished = _selected(cfg)
    if cfg.action == "ls":
        return _ls(cfg, rows, unfinished)
    if cfg.action == "clear":
        return _clear(cfg, rows)
    results, bad = [], 0
    for r in rows:
        status, worst = _verify(r, int(cfg.rows), float(cfg.tolerance), int(cfg.seed))
        bad += status != "ok"
        results.append([r["path"].name, status, None if worst is None else f"{worst:.2e}"])
    print_table(f"teacher cache verify: {len(rows)} entries", ("key", "status", "max abs diff"), results)
    if bad:
        raise UserError(f"{bad} of {len(rows)} cache entries failed; `distill cache clear entry=KEY` removes one")
    return {"verified": len(rows)}


main = hydra_entry("cache", run)

if __name__ == "__main__":
    main()
