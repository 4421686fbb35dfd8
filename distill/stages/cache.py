"""``distill cache ls | verify | clear``: see, check and free the teacher output cache (and the
teachers exported for onnxruntime, in its ``onnx/`` folder).

``verify`` re-derives every entry's inputs (the teacher file's digest, the training images'
digest) and recomputes random rows with the live teacher on the regenerated views: a mismatch
means the entry is stale or corrupt.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from distill.engine.cache import file_digest, list_entries, make_view, open_entry, tensor_digest
from distill.engine.checkpoint import build_loaded, read_weights, spec_of
from distill.engine.tables import print_table
from distill.engine.taps import Taps
from distill.errors import UserError
from distill.stages.common import hydra_entry, raise_if

ACTIONS = ("ls", "verify", "clear")


def validate(cfg: DictConfig) -> None:
    errors = []
    if cfg.action not in ACTIONS:
        errors.append(f"action={cfg.action!r} must be one of {', '.join(ACTIONS)}")
    if not isinstance(cfg.rows, int) or cfg.rows < 1:
        errors.append(f"rows must be a whole number >= 1, got {cfg.rows!r}")
    raise_if(errors)


def _selected(cfg: DictConfig) -> list[dict[str, Any]]:
    rows = list_entries(Path(str(cfg.dir)))
    if cfg.entry is not None:
        rows = [r for r in rows if r["path"].name.startswith(str(cfg.entry))]
        if not rows:
            raise UserError(f"no cache entry starts with {cfg.entry!r} in {cfg.dir}; `distill cache ls` lists them")
    return rows


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
    meta, key = row["meta"], row["meta"]["key"]
    teacher_path = Path(meta.get("teacher_path", ""))
    if not teacher_path.is_file():
        return f"stale: teacher file {teacher_path} is gone", None
    if file_digest(teacher_path) != key["teacher"]:
        return f"stale: {teacher_path} changed since the entry was built", None
    data = instantiate(OmegaConf.create(key["dataset"]), _convert_="all")
    if tensor_digest(data.train_x) != key["images"]:
        return "stale: the dataset's training images changed", None
    entry = open_entry(row["path"])
    teacher = _load_teacher(teacher_path)
    rng = np.random.default_rng(seed)
    worst = 0.0
    with torch.no_grad(), Taps(teacher, key["taps"]) as taps:
        for k in sorted({int(v) for v in rng.integers(entry.num_views, size=min(n_rows, 4))}):
            idx = np.sort(rng.choice(len(data.train_y), size=min(n_rows, len(data.train_y)), replace=False))
            view = make_view(data.train_x, key["augment"], k, key["seed"])[torch.from_numpy(idx)]
            live = teacher(view.float() / 255)
            feats = taps.take() if key["taps"] else []
            worst = max(worst, float((live - torch.from_numpy(entry.logits[k][idx]).float()).abs().max()))
            for j, f in enumerate(feats):
                worst = max(worst, float((f - torch.from_numpy(entry.feats[j][k][idx]).float()).abs().max()))
    return ("ok" if worst <= tolerance else f"MISMATCH (> {tolerance})"), worst


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    rows = _selected(cfg)
    if cfg.action == "ls":
        table = []
        for r in rows:
            key = r["meta"]["key"]
            table.append(
                [
                    r["path"].name,
                    Path(r["meta"].get("teacher_path", "?")).parent.parent.name or "?",
                    r["meta"].get("dataset", "?"),
                    key["augment"],
                    key["views"],
                    r["meta"].get("num_images"),
                    len(key["taps"]),
                    round(r["bytes"] / 1e6, 2),
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])),
                ]
            )
        print_table(
            f"teacher cache {cfg.dir}: {len(rows)} entries, {sum(r['bytes'] for r in rows) / 1e6:.1f} MB",
            ("key", "teacher run", "dataset", "augment", "views", "images", "taps", "MB", "last used"),
            table,
        )
        exported = _exported(cfg)
        if exported:
            mb = sum(f.stat().st_size for f in exported) / 1e6
            print(
                f"and {len(exported)} teachers exported for onnxruntime, {mb:.1f} MB, in {Path(str(cfg.dir)) / 'onnx'}"
            )
        return {"entries": len(rows), "exported": len(exported)}
    if cfg.action == "clear":
        freed = sum(r["bytes"] for r in rows)
        for r in rows:
            shutil.rmtree(r["path"])
        exported = _exported(cfg) if cfg.entry is None else []
        freed += sum(f.stat().st_size for f in exported)
        for f in exported:
            f.unlink()
        print(f"removed {len(rows)} cache entries and {len(exported)} exported teachers, {freed / 1e6:.1f} MB freed")
        return {"removed": len(rows), "exported_removed": len(exported), "bytes": freed}
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
