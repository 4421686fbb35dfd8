"""A KD epoch at full resolution on a streamed image folder: distill with its teacher cache against a
hand-written loop, and the peak memory of a streamed run as the folder grows.

    python scripts/bench_kd_epoch.py --folder DIR [--folder4 DIR4] [--teacher resnet50]
        [--student mobilenet_v3_small] [--size 224] [--epochs 2] [--workers 2]

Both train the same student on the training split of ``--folder`` (written by
``scripts/make_image_folder.py``) from the same frozen teacher (random weights: the speed does not
depend on them), with random resized crops and flips at ``--size`` px in ``--workers`` DataLoader
processes, batch 64, SGD, the KD loss at T=4, alpha 0.5.

* the hand-written loop: torchvision ``ImageFolder`` + ``transforms.v2`` (RandomResizedCrop, flip,
  ToImage, ToDtype), ``DataLoader`` (persistent workers), the teacher in ``eval()`` under
  ``torch.inference_mode()`` at every step, float32, as a careful engineer writes it;
* distill: ``distill train teacher.checkpoint=... dataset=imagefolder dataset.in_memory=false`` run
  twice: the first run builds the teacher cache (its build time is printed), the second reads it.

The figure is seconds per training epoch (distill's ``epoch_s``, the hand loop's own timer; the
first epoch of each is a warm-up and not counted). With ``--folder4`` (the same kind of folder, 4x
the images), the peak RSS of a streamed distill run on each folder is measured too (the run's
process, ``ru_maxrss``). Ratios are measured in this one run, on this machine (its CPU is printed).

Measured on a 2-core AMD EPYC (AVX-512 with bf16), 2026-12-03, resnet50 -> mobilenet_v3_small at
224 px, 400 training images: the hand loop 66.8 s/epoch (6.0 images/s), distill reading the cache
5.6 s/epoch (0.08x), the run that built it 7.6 s/epoch (0.11x; 126 s in all for its 2 epochs with
the build, the hand loop 134 s); peak RSS 2,513 MB at 400 and at 1,600 images (1.00x).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
from bench_data_pipeline import _cpu  # noqa: E402


def _teacher_file(folder: Path, name: str, size: int, out: Path) -> Path:
    """A distill weights file of ``name`` (random weights, seed 0) for ``folder``'s classes."""
    from distill.engine.checkpoint import save_weights
    from distill.models.registry import build_model
    from distill.models.spec import ModelSpec

    classes = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    torch.manual_seed(0)
    model = build_model(name, len(classes), 3, (size, size), mean, std)
    spec = ModelSpec(name=name, num_classes=len(classes), in_channels=3, image_size=[size, size], mean=list(mean),
                     std=list(std), classes=classes)  # fmt: skip
    return save_weights(out / "teacher.safetensors", model, spec)


def hand_loop(
    folder: Path, teacher_file: Path, student: str, size: int, epochs: int, workers: int, device: torch.device
) -> list[float]:
    """Seconds per epoch of the hand-written KD loop (on a GPU: pinned memory, bf16 autocast, channels-last)."""
    import torchvision
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    from distill.engine.checkpoint import load_model

    teacher, spec, _, _ = load_model(teacher_file)  # the same module distill loads (normalisation inside)
    torch.manual_seed(0)
    net = getattr(torchvision.models, student)(num_classes=spec.num_classes)
    normalize = v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    train = ImageFolder(
        str(folder / "train"),
        transform=v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                              v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]),
    )  # fmt: skip
    cuda = device.type == "cuda"
    loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=cuda)  # fmt: skip
    teacher, net = teacher.to(device), net.to(device)
    if cuda:
        teacher, net = teacher.to(memory_format=torch.channels_last), net.to(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    temperature, alpha = 4.0, 0.5
    times = []
    for _ in range(epochs):
        net.train()
        start = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=cuda), y.to(device, non_blocking=cuda)
            with amp:
                with torch.inference_mode():
                    t_logits = teacher(x).float()
                s_logits = net(normalize(x)).float()
            soft = F.kl_div(F.log_softmax(s_logits / temperature, 1), F.softmax(t_logits.clone() / temperature, 1),
                            reduction="batchmean") * temperature**2  # fmt: skip
            loss = alpha * soft + (1 - alpha) * F.cross_entropy(s_logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def distill_run(folder: Path, teacher_file: Path, student: str, size: int, epochs: int, workers: int, out: Path,
                cache: Path, device: str = "cpu") -> tuple[dict, list[float], float]:  # fmt: skip
    """(summary, seconds per epoch, peak RSS in MB) of one ``distill train`` on the streamed folder."""
    args = [sys.executable, "-m", "distill", "train", f"teacher.checkpoint={teacher_file}", f"student={student}",
            "dataset=imagefolder", f"dataset.root={folder}", f"dataset.image_size={size}", "dataset.in_memory=false",
            f"trainer.epochs={epochs}", f"trainer.num_workers={workers}", "trainer.batch_size=64",
            "distill.temperature=4", "distill.alpha=0.5", "trainer.progress=off", f"cache.dir={cache}",
            f"paths.root={out}", f"hydra.run.dir={out / 'run'}", f"trainer.device={device}"]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "stderr.txt", "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # the run's own peak RSS (its workers are other processes)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"distill train failed:\n{(out / 'stderr.txt').read_text()[-3000:]}")
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "run" / "summary.json").read_text())
    return summary, [r["epoch_s"] for r in rows], usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--folder4", type=Path, help="a folder of 4x the images, for the peak-RSS ratio")
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--student", default="mobilenet_v3_small")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the first is a warm-up")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    work = Path(tempfile.mkdtemp(prefix="distill-bench-kd-"))
    teacher_file = _teacher_file(args.folder, args.teacher, args.size, work)
    n_train = sum(1 for p in (args.folder / "train").rglob("*") if p.is_file())
    print(f"CPU: {_cpu()}, {os.cpu_count()} cores; torch {torch.__version__}; {args.teacher} -> {args.student}, "
          f"{args.size} px, {n_train} training images, {args.workers} workers, {args.device}"
          + (f" ({torch.cuda.get_device_name(0)})" if args.device == "cuda" else ""))  # fmt: skip

    device = torch.device(args.device)
    hand = hand_loop(args.folder, teacher_file, args.student, args.size, args.epochs, args.workers, device)
    cache = work / "cache"
    t0 = time.perf_counter()
    built, built_epochs, built_rss = distill_run(args.folder, teacher_file, args.student, args.size, args.epochs,
                                         args.workers, work / "built", cache, args.device)  # fmt: skip
    built_total = time.perf_counter() - t0
    hit, hit_epochs, hit_rss = distill_run(args.folder, teacher_file, args.student, args.size, args.epochs,
                                       args.workers, work / "hit", cache, args.device)  # fmt: skip
    assert built["teacher_cache"]["status"] == "built" and hit["teacher_cache"]["status"] == "hit", hit["teacher_cache"]

    def per_epoch(times: list[float]) -> float:
        timed = times[1:] or times
        return sum(timed) / len(timed)

    h, d = per_epoch(hand), per_epoch(hit_epochs)
    print(f"\n| {n_train} training images | s/epoch | images/s | ratio to the hand loop |\n|---|---|---|---|")
    print(f"| hand-written loop (ImageFolder, live teacher) | {h:.1f} | {n_train / h:.1f} | 1.00x |")
    print(f"| distill, teacher cache read | {d:.1f} | {n_train / d:.1f} | {d / h:.2f}x |")
    print(f"| distill, the run that built the cache (per epoch) | {per_epoch(built_epochs):.1f} | "
          f"{n_train / per_epoch(built_epochs):.1f} | {per_epoch(built_epochs) / h:.2f}x |")  # fmt: skip
    print(f"\ncache build: {built['teacher_cache']}; the building run took {built_total:.0f} s in all")
    print(f"student test acc: distill {hit['test_acc']:.4f} (random-weight teacher: speed only)")
    print(f"peak RSS of the run: {built_rss:.0f} MB building the cache, {hit_rss:.0f} MB reading it")
    if args.folder4:
        (work / "t4").mkdir()
        teacher4 = _teacher_file(args.folder4, args.teacher, args.size, work / "t4")
        run4 = (args.folder4, teacher4, args.student, args.size, args.epochs, args.workers)
        n4 = sum(1 for p in (args.folder4 / "train").rglob("*") if p.is_file())
        _, _, built4 = distill_run(*run4, work / "built4", work / "cache4", args.device)
        _, _, hit4 = distill_run(*run4, work / "hit4", work / "cache4", args.device)
        print(f"\n| peak RSS, streamed run | {n_train} training images | {n4} | ratio |\n|---|---|---|---|")
        print(f"| building the cache | {built_rss:.0f} MB | {built4:.0f} MB | {built4 / built_rss:.2f}x |")
        print(f"| reading the cache | {hit_rss:.0f} MB | {hit4:.0f} MB | {hit4 / hit_rss:.2f}x |")


if __name__ == "__main__":
    main()
