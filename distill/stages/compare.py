"""``distill compare``: distillation beside pruning, low rank and int8, measured the same way.

distill compare teacher.checkpoint=RUN_DIR students=[RUN_DIR,...]

Every candidate is made from one trained teacher (or is a distilled student given), exported to
ONNX and measured in onnxruntime on the same test split: accuracy, agreement with the teacher,
parameters (and non-zero ones), file size, latency per image at batch 1 and 64, time to make.
Writes ``compare.csv``, ``compare.md`` and ``compare.png`` (accuracy against latency, point size
= file size, the Pareto front marked) in the run folder.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from distill.compress.base import Context, Made
from distill.config.adapters import output_dir, save_resolved_config
from distill.config.checks import check_number, raise_if
from distill.config.entry import hydra_entry
from distill.engine.checkpoint import check_weights, load_model
from distill.engine.runs import RunDir, read_json, write_json
from distill.engine.tables import print_folder, print_table
from distill.errors import UserError
from distill.export.onnx import export_onnx
from distill.export.quantize import ort_latency_ms, quantize_static_int8
from distill.io import atomic_write
from distill.stages.eval import load_split

log = logging.getLogger("distill")
COLUMNS = (
    "candidate",
    "method",
    "test acc",
    "agreement",
    "params",
    "nonzero params",
    "ONNX MB",
    "ms/img b1",
    "ms/img b64",
    "make s",
    "pareto",
)


def validate(cfg: DictConfig) -> None:
    errors: list[str] = []
    for key, value in [("teacher.checkpoint", cfg.teacher.checkpoint), *(("students", s) for s in cfg.students)]:
        try:
            check_weights(str(value))
        except UserError as e:
            errors.append(f"{key}: {e}")
    check_number(cfg, "latency_repeats", errors, lo=1, integer=True)
    check_number(cfg, "threads", errors, lo=1, integer=True)
    if "channel" in (cfg.get("compress") or {}):
        import importlib.util

        if importlib.util.find_spec("torch_pruning") is None:
            errors.append("compress=channel needs torch-pruning: pip install 'distill[prune]'")
    raise_if(errors)


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _ort_logits(path: Path, x: torch.Tensor, threads: int) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run(["logits"], {"images": x[i : i + 256].float().div(255).numpy()})[0] for i in range(0, len(x), 256)]
    )


def _params(made: Made) -> tuple[int | None, int | None]:
    if made.model is None:
        return None, None
    ps = list(made.model.parameters())
    return sum(p.numel() for p in ps), sum(int((p != 0).sum()) for p in ps)


def pareto(rows: list[dict]) -> None:
    """Marks rows no other row beats on both accuracy (higher) and batch-1 latency (lower)."""
    for r in rows:
        r["pareto"] = not any(
            o is not r
            and o["test_acc"] >= r["test_acc"]
            and o["latency_b1_ms"] <= r["latency_b1_ms"]
            and (o["test_acc"] > r["test_acc"] or o["latency_b1_ms"] < r["latency_b1_ms"])
            for o in rows
        )


def _size_legend(ax: Any, sizes: np.ndarray, scale: float) -> list[Any]:
    """Legend entries for point area = ONNX file size: the largest file and a decade or two under it."""
    top = float(sizes.max())
    marks = [m for m in (top, top / 10, top / 100) if m * scale >= 12] or [top]
    return [ax.scatter([], [], s=m * scale, color="0.6", alpha=0.5, label=f"{m:.3g} MB") for m in marks]


def _unpile(fig: Any, texts: list[Any]) -> None:
    """Moves labels down, top first, until none covers another (candidates often share a point)."""
    from matplotlib.text import Text

    fig.canvas.draw()  # the layout places the axes first
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    for text in sorted(texts, key=lambda t: -t.xy[1]):
        box = Text.get_window_extent(text, renderer)  # the words alone, not the leader line to the point
        for _ in range(len(texts) * 4):
            if not any(box.overlaps(b) for b in placed):
                break
            x, y = text.get_position()
            text.set_position((x, y - 3))  # offset points
            box = Text.get_window_extent(text, renderer)
        placed.append(box)


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Accuracy against batch-1 latency (log axis, plain-number ticks), a colour per method, point
    area = ONNX file size (its own legend), the Pareto front joined; labels inside the figure, apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = plt.subplots(figsize=(8, 4.8), layout="constrained")
    sizes = np.array([r["onnx_mb"] for r in rows])
    scale = 600 / max(sizes.max(), 1e-9)
    colours = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    xs = np.log10([r["latency_b1_ms"] for r in rows])
    middle = (xs.min() + xs.max()) / 2
    texts = []
    for r, x in zip(rows, xs):
        point = (r["latency_b1_ms"], r["test_acc"])
        base = r["method"] == "baseline"  # the teacher on top, outlined: pruned copies often sit on it
        ax.scatter(*point, s=max(12, r["onnx_mb"] * scale), alpha=0.55, color=colours[r["method"]],
                   edgecolors="k" if base else "none", zorder=3 if base else 2)  # fmt: skip
        right = x > middle  # labels of the right half go to the left of their point: none leaves the axes
        texts.append(
            ax.annotate(r["candidate"], point, fontsize=8, textcoords="offset points", xytext=(-6 if right else 6, 2),
                        ha="right" if right else "left", va="bottom",
                        arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5, "shrinkA": 0, "shrinkB": 3})
        )  # fmt: skip
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["latency_b1_ms"])
    (front_line,) = ax.plot(
        [r["latency_b1_ms"] for r in front], [r["test_acc"] for r in front], "k--", lw=1, label="Pareto front"
    )
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.08, y=0.08)
    ax.set_xlabel("onnxruntime latency, ms per image at batch 1 (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    methods = [ax.scatter([], [], s=40, color=c, alpha=0.55, label=m) for m, c in colours.items()]
    fig.legend(handles=[*methods, front_line], fontsize=8, loc="outside right upper")
    sized = _size_legend(ax, sizes, scale)
    fig.legend(handles=sized, fontsize=8, title="ONNX file size", title_fontsize=8, loc="outside right lower",
               labelspacing=1.6, borderpad=1.0, handletextpad=1.5)  # fmt: skip
    _unpile(fig, texts)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg)
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    torch.manual_seed(int(cfg.seed))
    device = torch.device("cuda" if cfg.trainer.device == "auto" and torch.cuda.is_available() else "cpu")
    if cfg.trainer.device not in ("auto",):
        device = torch.device(str(cfg.trainer.device))
    run_dir = output_dir(cfg)
    save_resolved_config(cfg, run_dir)
    work = run_dir / "candidates"
    work.mkdir(exist_ok=True)
    teacher, spec, config, weights = load_model(str(cfg.teacher.checkpoint))
    _, _, data = load_split(config, "test", weights)
    example = data.test_x[:2].float().div(255)
    teacher_onnx = export_onnx(teacher, example, work / "teacher.onnx", int(cfg.opset))
    ctx = Context(teacher.to(device), data, device, work, teacher_onnx, int(cfg.seed), int(cfg.trainer.batch_size))
    made: list[Made] = [Made(f"teacher {spec.name}", "baseline", teacher, teacher_onnx, {"seconds": None})]
    for name, node in (cfg.get("compress") or {}).items():
        log.info("making %s candidates", name)
        made += instantiate(node)(ctx)
    for student_run in cfg.students:
        model, s_spec, _, s_weights = load_model(str(student_run))
        summary = read_json(RunDir.of_weights(s_weights).summary) or {}
        seconds = summary.get("train_seconds")
        s_onnx = export_onnx(model, example, work / f"student_{_slug(s_spec.name)}.onnx", int(cfg.opset))
        made.append(Made(f"student {s_spec.name}", "distillation", model, s_onnx, {"seconds": seconds}))
        start = time.perf_counter()
        g = torch.Generator().manual_seed(int(cfg.seed))
        calib = data.train_x[torch.randperm(len(data.train_x), generator=g)[:512]].float().div(255)
        q = quantize_static_int8(s_onnx, work / f"student_{_slug(s_spec.name)}.int8.onnx", calib)
        made.append(
            Made(
                f"student {s_spec.name} int8",
                "distillation + int8",
                None,
                q,
                {"seconds": (seconds or 0) + time.perf_counter() - start, "params_from": model},
            )
        )
    x, y = data.test_x, data.test_y.numpy()
    t_pred = _ort_logits(teacher_onnx, x, int(cfg.threads)).argmax(1)
    rows = []
    for m in made:
        path = m.onnx
        if path is None:
            path = export_onnx(m.model.cpu().eval(), example, work / f"{_slug(m.label)}.onnx", int(cfg.opset))
        pred = _ort_logits(path, x, int(cfg.threads)).argmax(1)
        params, nonzero = _params(m if m.model is not None else Made(m.label, m.method, m.notes.get("params_from")))
        rows.append(
            {
                "candidate": m.label,
                "method": m.method,
                "test_acc": round(float((pred == y).mean()), 6),
                "agreement": round(float((pred == t_pred).mean()), 6),
                "params": params,
                "nonzero_params": nonzero,
                "onnx_mb": round(path.stat().st_size / 1e6, 3),
                "latency_b1_ms": round(ort_latency_ms(path, x, int(cfg.latency_repeats), threads=int(cfg.threads)), 4),
                "latency_b64_ms": round(
                    ort_latency_ms(path, x, max(5, int(cfg.latency_repeats) // 5), 3, int(cfg.threads), batch=64), 4
                ),
                "make_seconds": None if m.notes.get("seconds") is None else round(m.notes["seconds"], 1),
                "onnx": str(path),
                **{k: v for k, v in m.notes.items() if k not in ("seconds", "params_from")},
            }
        )
        log.info("%s: test acc %.4f, %.3f ms/img", m.label, rows[-1]["test_acc"], rows[-1]["latency_b1_ms"])
    pareto(rows)
    keys = ["test_acc", "agreement", "params", "nonzero_params", "onnx_mb", "latency_b1_ms", "latency_b64_ms"]
    table = [
        [r["candidate"], r["method"], *(r[k] for k in keys), r["make_seconds"], "yes" if r["pareto"] else ""]
        for r in rows
    ]
    title = (
        f"{data.name}: {len(y)} test images, onnxruntime on {cfg.threads} thread(s), "
        f"median of {cfg.latency_repeats} calls"
    )
    print_table(title, COLUMNS, table)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    writer.writerows(table)
    atomic_write(run_dir / "compare.csv", buf.getvalue())
    md = [f"**{title}**", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in table]
    atomic_write(run_dir / "compare.md", "\n".join(md) + "\n")
    plot(rows, run_dir / "compare.png", title)
    summary = {"stage": "compare", "teacher": str(weights), "candidates": rows}
    write_json(RunDir(run_dir).summary, summary)
    log.info("wrote compare.csv, compare.md, compare.png")
    print_folder("compare run folder", run_dir)
    return summary


main = hydra_entry("compare", run)

if __name__ == "__main__":
    main()
