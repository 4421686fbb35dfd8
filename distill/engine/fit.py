"""The training run shared by the ``teacher`` and ``train`` stages: epochs, validation, checkpoints."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from distill.data.base import Splits
from distill.engine import distributed as dist
from distill.engine.batches import BatchLoader
from distill.engine.checkpoint import save_state, save_weights
from distill.engine.loop import (
    EpochStats,
    Running,
    Teachers,
    TrainedParts,
    leaves_parts_out,
    predict,
    recalibrate_bn,
    train_one_epoch,
)
from distill.engine.metrics import topk_accuracy
from distill.engine.progress import EpochProgress
from distill.engine.runs import RunDir
from distill.engine.settings import TrainerSettings
from distill.engine.state import Interrupted, Signals, Trained, TrainState
from distill.engine.taps import Taps
from distill.io import atomic_write
from distill.models.spec import ModelSpec

log = logging.getLogger("distill")


def _over_ranks(stats: EpochStats) -> EpochStats:
    """An epoch's loss, accuracy and image count over every rank's share (rank 0's time)."""
    if dist.world_size() == 1:
        return stats
    keys = sorted(stats.parts)
    n = stats.images
    loss, correct, seen, *parts = dist.sum_floats(
        [stats.loss * n, stats.acc * n, float(n), *(stats.parts[k] * n for k in keys)]
    )
    return EpochStats(loss / seen, correct / seen, int(seen), stats.seconds, {k: v / seen for k, v in zip(keys, parts)})


@dataclass
class FitResult:
    best_epoch: int
    best_val_acc: float
    last_test_acc: float
    train_images_per_s: float
    train_seconds: float
    bn_recalibrated_images: int
    # the test logits of the weights in memory at the end when they are the kept ones (the last epoch
    # kept): the test split is then predicted once, not again from best.safetensors
    kept_test_logits: torch.Tensor | None = None


def _write_metrics(path: Path, rows: list[dict]) -> None:
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))


def selects(rule: str, val_acc: float, history: list[float], n_val: int) -> bool:
    """Whether this epoch (val accuracy ``val_acc``, the last of ``history``) becomes the run's weights,
    replacing the epoch kept so far, under ``trainer.select``:

    - ``best``: a higher val accuracy than every earlier epoch (the first of a tie is kept);
    - ``last``: always;
    - ``one_se``: within one standard error of the best val accuracy so far (the one-standard-error
      rule of Hastie, Tibshirani and Friedman, *Elements of Statistical Learning* 7.10, choosing the
      most trained of the epochs the val split cannot tell apart). The error is Agresti and Coull's,
      ``sqrt(q (1 - q) / (n + 4))`` with ``q = (k + 2) / (n + 4)`` for ``k`` of ``n`` right: the plain
      ``sqrt(p (1 - p) / n)`` shrinks to nothing near 100% (at 396 of 400 it is 1.99 images, so an
      epoch 2 images below a lucky best would not count as its equal). On 400 images at 0.985 it is
      2.8 images: "best" there mostly picks an early epoch by a one-image difference, while the later
      ones, trained longer at a lower rate, test better. Applied epoch by epoch this keeps the latest
      epoch within one error of the best of the whole run.
    """
    if rule == "last":
        return True
    if rule == "best":
        return val_acc > max(history[:-1], default=-1.0)
    n = max(n_val, 1)
    top = max(history)
    q = (top * n + 2) / (n + 4)
    return val_acc >= top - math.sqrt(q * (1 - q) / (n + 4)) - 1e-12


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    data: Splits,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: TrainerSettings,
    run_dir: Path,
    spec: ModelSpec,
    config: dict,
    seed: int,
    teachers: Teachers | None = None,
    student_taps: Taps | None = None,
    with_index: bool = False,
    view_fn: Callable[[int], torch.Tensor] | None = None,
    resume: dict | None = None,
    extra_state: dict | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Trains ``model``, keeping ``checkpoints/best.safetensors`` (by validation accuracy) and ``last``.

    Each epoch appends a line to ``metrics.jsonl`` and writes ``checkpoints/state.pt``: everything a
    resumed run needs to end exactly where this one would (a :class:`TrainState` with the weights of
    the model, connectors and online peers, optimizer, scheduler, scaler, RNG, and ``extra_state``);
    ``on_epoch(row)`` gets each epoch's metrics. ``trainer.save_every_steps`` also writes it within
    epochs; SIGINT/SIGTERM write it after the current step and raise :class:`Interrupted`.
    ``resume`` is such a state. When done, ``model`` holds the *last* weights (the caller loads
    ``best`` for the test figure); ``last_test_acc`` is measured here.
    """
    device = settings.torch_device()
    # torch.compile for the training steps only; the eager module (same parameters) is saved,
    # evaluated and exported. Feature taps are forward hooks, which compiled graphs may skip.
    step_model = model
    if settings.compile and student_taps is None:
        step_model = torch.compile(model)
    elif settings.compile:
        log.warning("trainer.compile is off for this run: the method reads student layers through hooks")
    cl, workers = settings.channels_last, settings.num_workers
    loader = BatchLoader(
        data.train_x,
        data.train_y,
        settings.batch_size,
        augment=data.augment,
        seed=seed,
        device=device,
        num_workers=settings.num_workers,
        channels_last=cl,
        with_index=with_index,
        view_fn=view_fn,
        shard=True,
    )
    calib = BatchLoader(
        data.train_x, data.train_y, settings.batch_size, shuffle=True, seed=seed + 1, device=device, channels_last=cl
    )
    # fp16 needs loss scaling against gradient underflow; bf16 has fp32's range and does not.
    scaler = torch.amp.GradScaler("cuda") if settings.precision == "16-mixed" and device.type == "cuda" else None
    peers = teachers.models if teachers is not None and teachers.online else []
    trained = Trained(model, loss_fn, peers, optimizer, scheduler, scaler)
    main = dist.is_main()  # only rank 0 writes files under torchrun
    files = RunDir(run_dir)
    st = TrainState()
    if resume is not None:
        st = TrainState.restore(resume, trained, device)
        log.info("resuming at epoch %d, step %d of %d", st.epoch + 1, st.step, len(loader))
    start_epoch, start_step, running = st.epoch, st.step, st.running
    # Under torchrun: DistributedDataParallel over everything the optimizer steps (starting from rank
    # 0's weights); one process trains the plain module. Files are written from the unwrapped modules.
    parts = dist.data_parallel(
        TrainedParts(step_model, loss_fn, teachers, student_taps), leaves_parts_out(loss_fn, settings.epochs)
    )
    # metrics.jsonl holds exactly the epochs the state has (a kill between the two writes is undone)
    if main:
        _write_metrics(files.metrics, st.rows)

    def save(epoch: int, step: int, run: Running | None) -> None:
        st.epoch, st.step, st.running = epoch, step, run
        save_state(files.state, st.to_dict(trained, seed, device, extra_state))

    progress, every = (settings.progress, settings.log_every_s) if main else ("off", 0)
    with Signals() as signals, EpochProgress(settings.epochs, len(loader), progress, every) as bar:
        bar.skip(start_epoch * len(loader) + start_step)
        for epoch in range(start_epoch, settings.epochs):
            loader.set_epoch(epoch)
            t0 = time.perf_counter()
            first = start_step if epoch == start_epoch else 0
            base = running.seen if running is not None and epoch == start_epoch else 0  # images before a resume
            lr = optimizer.param_groups[0]["lr"]  # the epoch's own (scheduler.step() below sets the next one's)

            def on_step(step: int, run: Running, epoch: int = epoch, t0: float = t0, base: int = base) -> None:
                seen = max(run.seen, 1)
                bar.step(epoch, run.loss / seen, run.correct / seen, (run.seen - base) / (time.perf_counter() - t0))
                every = settings.save_every_steps
                last_step = step + 1 == len(loader)
                if main and (signals.received is not None or (every and (step + 1) % every == 0 and not last_step)):
                    save(epoch, step + 1, run)
                if signals.received is not None:
                    raise Interrupted(signals.received, run_dir)

            stats = train_one_epoch(
                step_model,
                loss_fn,
                loader,
                optimizer,
                teachers=teachers,
                student_taps=student_taps,
                precision=settings.precision,
                scaler=scaler,
                on_step=on_step,
                mix=(settings.mix, settings.mix_alpha, data.num_classes) if settings.mix != "none" else None,
                epoch=epoch,
                start_step=first,
                running=running if epoch == start_epoch else None,
                parts=parts,
                grad_clip=settings.grad_clip,
            )
            stats = _over_ranks(stats)
            scheduler.step()
            st.images, st.seconds = st.images + stats.images, st.seconds + stats.seconds
            if settings.bn_recalibrate:
                calib.set_epoch(epoch)
                st.calibrated = recalibrate_bn(model, calib, settings.bn_recalibrate_batches)
            dist.same_buffers(model, *peers, loss_fn)  # every rank evaluates and goes on with rank 0's statistics
            val_acc = topk_accuracy(
                predict(model, data.val_x, settings.eval_batch_size, device, channels_last=cl, num_workers=workers),
                data.val_y,
            )
            row = {
                "epoch": epoch + 1,
                "train_loss": round(stats.loss, 6),
                "train_acc": round(stats.acc, 6),
                **{f"train_{k}": round(v, 6) for k, v in stats.parts.items()},
                "val_acc": round(val_acc, 6),
                "lr": lr,
                "images_per_s": round(stats.images_per_s, 1),
                "epoch_s": round(stats.seconds, 3),
            }
            st.rows.append(row)
            improved = selects(settings.select, row["val_acc"], [r["val_acc"] for r in st.rows], len(data.val_y))
            if improved:
                st.best_val_acc, st.best_epoch = val_acc, epoch + 1
            if main:
                _write_metrics(files.metrics, st.rows)
                if on_epoch is not None:  # trackers (TensorBoard, MLflow)
                    on_epoch(row)
                save_weights(files.last, model, spec, config)
                if improved:
                    save_weights(files.best, model, spec, config)
                save(epoch + 1, 0, None)
            log.info(
                "epoch %d/%d  loss %.4f  train acc %.4f  val acc %.4f  %.0f img/s",
                epoch + 1,
                settings.epochs,
                stats.loss,
                stats.acc,
                val_acc,
                stats.images_per_s,
            )
            if signals.received is not None:  # arrived during evaluation: the state above is the epoch's end
                raise Interrupted(signals.received, run_dir)
    dist.barrier()  # rank 0's checkpoints are on disk before any rank reads best.safetensors
    last_logits = predict(model, data.test_x, settings.eval_batch_size, device, channels_last=cl, num_workers=workers)
    last_test = topk_accuracy(last_logits, data.test_y)
    images, seconds = st.images, st.seconds
    kept = last_logits if st.best_epoch == settings.epochs else None
    return FitResult(
        st.best_epoch, st.best_val_acc, last_test, images / max(seconds, 1e-9), seconds, st.calibrated, kept
    )
