"""``distill export run=RUN_DIR``: the trained model as an ONNX file that onnxruntime runs with the same answers.

The graph takes float32 NCHW images in [0, 1] with a dynamic batch axis and carries the
normalisation (and any resizing) inside. ``model.json`` beside it names the classes in output
order and the input's shape. The export is checked in onnxruntime on real test images.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from distill.config.adapters import teacher_for_comparison
from distill.config.checks import raise_if
from distill.config.entry import hydra_entry
from distill.data.streaming import eval_recipe
from distill.engine.checkpoint import check_weights, load_model, run_folder
from distill.engine.loggers import log_artifact_to
from distill.engine.runs import RunDir, read_json, write_json
from distill.engine.tables import console, print_folder, print_table
from distill.errors import UserError
from distill.export.bare import bare_metadata, write_bare
from distill.export.onnx import check_onnx, export_onnx
from distill.export.pt2 import check_pt2, export_pt2
from distill.export.quantize import ort_accuracy, ort_latency_ms, quantize_static_int8
from distill.stages.eval import load_split

log = logging.getLogger("distill")


def validate(cfg: DictConfig) -> None:
    errors = []
    try:
        check_weights(cfg.run)
    except UserError as e:
        errors.append(f"run: {e}")
    if not isinstance(cfg.get("pt2", False), bool):
        errors.append(f"pt2 must be true or false, got {cfg.pt2!r}")
    if not isinstance(cfg.check_images, int) or cfg.check_images < 1:
        errors.append(f"check_images must be a whole number >= 1, got {cfg.check_images!r}")
    if not isinstance(cfg.tolerance, (int, float)) or cfg.tolerance <= 0:
        errors.append(f"tolerance must be a number > 0, got {cfg.tolerance!r}")
    if not isinstance(cfg.opset, int) or not 13 <= cfg.opset <= 23:
        errors.append(f"opset must be a whole number from 13 to 23, got {cfg.opset!r}")
    if cfg.get("quantize") not in (None, "int8"):
        errors.append(f"quantize={cfg.quantize!r} must be null or int8")
    if not isinstance(cfg.get("calibration_images", 1), int) or cfg.get("calibration_images", 1) < 1:
        errors.append(f"calibration_images must be a whole number >= 1, got {cfg.calibration_images!r}")
    if cfg.output is not None and not str(cfg.output).endswith(".onnx"):
        errors.append(f"output={cfg.output} must end in .onnx")
    raise_if(errors)


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    model, spec, config, weights = load_model(cfg.run)
    run_dir = run_folder(weights)
    out = Path(str(cfg.output)) if cfg.output else run_dir / "model.onnx"
    x, _, _ = load_split(config, "test", weights)
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
        "preprocessing": _preprocessing(config, spec),
        "output": {"name": "logits", "shape": ["batch", spec.num_classes]},
        "opset": cfg.opset,
        "weights": str(weights),
        "check": {"images": len(images), "max_abs_diff": diff, "tolerance": cfg.tolerance},
    }
    meta_path = out.with_name("model.json") if out.name == "model.onnx" else out.with_suffix(".json")
    bare = write_bare(model, spec, out.with_suffix(".safetensors"))
    meta["bare_network"] = {"file": bare.name, **{k: v for k, v in bare_metadata(model, spec).items() if k != "input"}}
    write_json(meta_path, meta)
    console.print(
        f"onnxruntime check on {len(images)} test images: max abs diff {diff:.2e} "
        f"(tolerance {cfg.tolerance:g}) [green]OK[/green]"
    )
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), {meta_path} and {bare} (the network alone: "
                  f"{meta['bare_network']['build']}.load_state_dict(...))")  # fmt: skip
    result = {"stage": "export", "onnx": str(out), "model_json": str(meta_path), "max_abs_diff": diff}
    result["bare_network"] = str(bare)
    if cfg.get("pt2"):
        pt2 = export_pt2(model, images[:2], out.with_suffix(".pt2"))
        pt2_diff = check_pt2(model, pt2, images)
        if pt2_diff > cfg.tolerance:
            pt2.unlink(missing_ok=True)
            raise RuntimeError(f"torch.export's program differs from the model by {pt2_diff:.3g} > {cfg.tolerance:g}")
        result["pt2"] = str(pt2)
        meta["pt2"] = {"file": pt2.name, "max_abs_diff": pt2_diff}
        write_json(meta_path, meta)
        console.print(f"wrote {pt2} (torch.export; max abs diff {pt2_diff:.2e} on the same images)")
    if cfg.get("quantize") == "int8":
        result["int8"] = _int8(cfg, out, (config, weights), run_dir, spec.name)
        meta["int8"] = result["int8"]
        write_json(meta_path, meta)
    # the run logged to MLflow: its ONNX files join its artifacts
    exported = [out, meta_path, bare, *([Path(result["int8"]["path"])] if "int8" in result else [])]
    exported += [Path(result["pt2"])] if "pt2" in result else []
    if all(log_artifact_to(RunDir(run_dir).summary, p) for p in exported if p.is_file()):
        result["mlflow_artifacts"] = [p.name for p in exported if p.is_file()]
    print_folder("exported into folder", out.parent)
    return result


# The datasets read from image files (any size), whose eval recipe resizes and crops them.
_IMAGE_FILES = ("distill.data.imagefolder.imagefolder", "distill.data.filelist.filelist")


def _preprocessing(config: dict, spec) -> dict:
    """How an image becomes the graph's input, as the run's evaluation made it."""
    dataset = config.get("dataset") if isinstance(config, dict) else None  # read from the weights file: data
    dataset = dataset if isinstance(dataset, dict) else {}
    if dataset.get("_target_") in _IMAGE_FILES:
        return eval_recipe(int(spec.image_size[0]), int(spec.in_channels))
    name = str(dataset.get("_target_", "?")).rsplit(".", 1)[-1]
    return {
        "decode": f"the images of dataset {name} as it stores them, {spec.image_size[0]}x{spec.image_size[1]} px",
        "to_input": "uint8 HWC -> float32 CHW / 255, batch first; the normalisation is inside the graph",
    }


def _int8(cfg: DictConfig, fp32: Path, stored: tuple[dict, Path], run_dir: Path, name: str) -> dict[str, Any]:
    """Quantizes ``fp32`` to int8 calibrated on training images; compares accuracy and latency with
    the float model and with the teacher the run was distilled from, all in onnxruntime."""
    config, weights = stored
    train_x, _, data = load_split(config, "train", weights)
    test_x, test_y = data.test_x, data.test_y
    g = torch.Generator().manual_seed(0)
    calib = train_x[torch.randperm(len(train_x), generator=g)[: cfg.calibration_images]].float().div(255)
    q = fp32.with_name(fp32.stem + ".int8.onnx")
    quantize_static_int8(fp32, q, calib)
    rows = []
    summary_file = RunDir(run_dir).summary
    teacher_file = read_json(summary_file).get("teacher_weights") if summary_file.is_file() else None
    found = teacher_for_comparison(teacher_file)
    with tempfile.TemporaryDirectory() as tmp:
        if found is not None and found[1] == "onnx":
            rows.append(_measure("teacher (onnx)", "float32", Path(teacher_file), test_x, test_y))
        elif found is not None:
            t_onnx = export_onnx(found[0], test_x[:2].float().div(255), Path(tmp) / "teacher.onnx", cfg.opset)
            rows.append(_measure(f"teacher {found[1]}", "float32", t_onnx, test_x, test_y))
        rows.append(_measure(f"student {name}", "float32", fp32, test_x, test_y))
        rows.append(_measure(f"student {name}", "int8", q, test_x, test_y))
    print_table(
        f"onnxruntime, {len(test_y)} test images, latency at batch 1 on 1 thread (median of 50)",
        ("model", "weights", "test acc", "latency ms/img", "size MB"),
        [[r["model"], r["weights"], r["test_acc"], r["latency_ms"], r["size_mb"]] for r in rows],
    )
    console.print(f"wrote {q} ({q.stat().st_size / 1e6:.2f} MB), calibrated on {len(calib)} training images")
    return {"path": str(q), "calibration_images": len(calib), "models": rows}


def _measure(label: str, kind: str, path: Path, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    return {
        "model": label,
        "weights": kind,
        "test_acc": round(ort_accuracy(path, x, y), 6),
        "latency_ms": round(ort_latency_ms(path, x[:1]), 4),
        "size_mb": round(path.stat().st_size / 1e6, 3),
    }


main = hydra_entry("export", run)

if __name__ == "__main__":
    main()
