"""``distill export run=RUN_DIR``: the trained model as an ONNX file that onnxruntime runs with the same answers.

The graph takes float32 NCHW images in [0, 1] with a dynamic batch axis and carries the
normalisation (and any resizing) inside. ``model.json`` beside it names the classes in output
order and the input's shape. The export is checked in onnxruntime on real test images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.engine.checkpoint import check_weights, load_model
from distill.engine.runs import write_json
from distill.engine.tables import console
from distill.errors import UserError
from distill.export.onnx import check_onnx, export_onnx
from distill.stages.common import hydra_entry, raise_if
from distill.stages.eval import load_split

log = logging.getLogger("distill")


def validate(cfg: DictConfig) -> None:
    errors = []
    try:
        check_weights(cfg.run)
    except UserError as e:
        errors.append(f"run: {e}")
    if not isinstance(cfg.check_images, int) or cfg.check_images < 1:
        errors.append(f"check_images must be a whole number >= 1, got {cfg.check_images!r}")
    if not isinstance(cfg.tolerance, (int, float)) or cfg.tolerance <= 0:
        errors.append(f"tolerance must be a number > 0, got {cfg.tolerance!r}")
    if not isinstance(cfg.opset, int) or not 13 <= cfg.opset <= 23:
        errors.append(f"opset must be a whole number from 13 to 23, got {cfg.opset!r}")
    if cfg.output is not None and not str(cfg.output).endswith(".onnx"):
        errors.append(f"output={cfg.output} must end in .onnx")
    raise_if(errors)


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    model, spec, config, weights = load_model(cfg.run)
    run_dir = weights.parent.parent
    out = Path(str(cfg.output)) if cfg.output else run_dir / "model.onnx"
    x, _, _ = load_split(config, "test")
    images = x[: cfg.check_images].float().div(255)
    export_onnx(model, images[:2], out, cfg.opset)
    diff = check_onnx(model, out, images)
    if diff > cfg.tolerance:
        out.unlink(missing_ok=True)
        raise RuntimeError(f"onnxruntime differs from PyTorch by {diff:.3g} > tolerance {cfg.tolerance:g}")
    meta = {
        "model": spec.name,
        "classes": spec.classes,
        "input": {
            "name": "images",
            "dtype": "float32",
            "layout": "NCHW",
            "range": [0.0, 1.0],
            "channels": spec.in_channels,
            "height": spec.image_size[0],
            "width": spec.image_size[1],
            "normalization": "inside the graph",
            "mean": spec.mean,
            "std": spec.std,
        },
        "output": {"name": "logits", "shape": ["batch", spec.num_classes]},
        "opset": cfg.opset,
        "weights": str(weights),
        "check": {"images": len(images), "max_abs_diff": diff, "tolerance": cfg.tolerance},
    }
    meta_path = out.with_name("model.json") if out.name == "model.onnx" else out.with_suffix(".json")
    write_json(meta_path, meta)
    console.print(
        f"onnxruntime check on {len(images)} test images: max abs diff {diff:.2e} "
        f"(tolerance {cfg.tolerance:g}) [green]OK[/green]"
    )
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB) and {meta_path}")
    return {"stage": "export", "onnx": str(out), "model_json": str(meta_path), "max_abs_diff": diff}


main = hydra_entry("export", run)

if __name__ == "__main__":
    main()
