"""The training run shared by the ``teacher`` and ``train`` stages: epochs, validation, checkpoints."""

from __future__ import annotations

import json
import logging
import signal
import threading
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
from distill.engine.loop import EpochStats, Running, Teachers, predict, recalibrate_bn, train_one_epoch
from distill.engine.metrics import topk_accuracy
from distill.engine.progress import EpochProgress
from distill.engine.runs import RunDir
from distill.engine.taps import Taps
from distill.io import atomic_write
from distill.models.spec import ModelSpec

log = logging.getLogger("distill")


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 matrix maths natively (so bf16 inference is faster, not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return bool(
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        )
    return False


@dataclass
class TrainerSettings:
    """How to train; mirrors the ``trainer`` config group (see ``conf/trainer/default.yaml``)."""

    epochs: int = 30  # as conf/trainer/default.yaml (the teacher stage sets 20 in conf/teacher.yaml)
    batch_size: int = 64
    device: str = "auto"
    precision: str = "32"
    teacher_precision: str = "auto"
    teacher_backend: str = "auto"
    num_workers: int = 0
    channels_last: bool = True
    bn_recalibrate: bool = True
    bn_recalibrate_batches: int = 10
    eval_batch_size: int = 512
    threads: int | None = None
    progress: str = "auto"
    mix: str = "none"
    compile: bool = False
    mix_alpha: float = 1.0
    save_every_steps: int = 0

    def __post_init__(self) -> None:
        # `trainer.precision=32` on the command line arrives as a number
        self.precision, self.teacher_precision = str(self.precision), str(self.teacher_precision)

    def teacher_autocast(self) -> str:
        """The teacher's inference precision: ``auto`` is bf16 where the hardware computes it natively
        (CPUs with AVX512-BF16 or AMX, CUDA GPUs with bf16), else the student's precision. An explicit
        ``teacher_backend=onnxruntime`` wins over the automatic choice: onnxruntime runs float32."""
        if self.teacher_precision != "auto":
            return self.teacher_precision
        if self.teacher_backend == "onnxruntime":
            return "32"
        return "bf16-mixed" if fast_bf16(self.torch_device()) else self.precision

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


STATE_FORMAT = "distill-state"
STATE_VERSION = 2


class Interrupted(Exception):  # noqa: N818  (a signal, not an error)
    """SIGINT or SIGTERM arrived: the step finished, the state is saved, the run can resume."""

    def __init__(self, signum: int, run_dir: Path) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.run_dir = signum, run_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Signals:
    """Turns SIGINT/SIGTERM into a flag the training loop checks after each step (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        # under torchrun the ranks would not stop at the same step: the default handlers stay
        if threading.current_thread() is threading.main_thread() and dist.world_size() == 1:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received is not None:  # a second Ctrl-C: stop now, the last saved state stays
            raise KeyboardInterrupt
        self.received = signum
        log.warning("%s: finishing this step and saving the state (again to stop at once)", signal.Signals(signum).name)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def check_state(state: dict, path: Path) -> None:
    """Refuses a state file of another format or version (one line, no traceback)."""
    from distill.errors import UserError

    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise UserError(
            f"{path} is not a distill training state of version {STATE_VERSION} "
            f"(format {state.get('format')!r}, version {state.get('version')!r}); it cannot be resumed"
        )


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


def fit(
    model: nn.Module,
    loss_fn: Callable,
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
    resumed run needs to end exactly where this one would (weights of the model, connectors and
    online peers, optimizer, scheduler, scaler, RNG, the epoch and step, the metrics so far, and
    ``extra_state``); ``on_epoch(row)`` gets each epoch's metrics. ``trainer.save_every_steps``
    also writes it within epochs; SIGINT/SIGTERM write it after the current step and raise
    :class:`Interrupted`. ``resume`` is such a state.
    When done, ``model`` holds the *last* weights (the caller loads ``best`` for the test figure);
    ``last_test_acc`` is measured here.
    """
    device = settings.torch_device()
    # torch.compile for the training steps only; the eager module (same parameters) is saved,
    # evaluated and exported. Feature taps are forward hooks, which compiled graphs may skip.
    step_model = model
    if settings.compile and student_taps is None:
        step_model = torch.compile(model)
    elif settings.compile:
        log.warning("trainer.compile is off for this run: the method reads student layers through hooks")
    cl = settings.channels_last
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
    main = dist.is_main()  # only rank 0 writes files under torchrun
    trained = [model, *peers, *([loss_fn] if isinstance(loss_fn, nn.Module) else [])]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    files = RunDir(run_dir)
    best_acc, best_epoch, images, seconds, calibrated = -1.0, -1, 0, 0.0, 0
    start_epoch, start_step, running, rows = 0, 0, None, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        if isinstance(loss_fn, nn.Module):
            loss_fn.load_state_dict(resume["loss_fn"])
        for peer, state in zip(peers, resume["peers"]):
            peer.load_state_dict(state)
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        best_acc, best_epoch = resume["best_val_acc"], resume["best_epoch"]
        images, seconds, calibrated = resume["images"], resume["seconds"], resume["calibrated"]
        start_epoch, start_step = resume["epoch"], resume["step"]
        running = Running(**resume["running"]) if start_step else None
        rows = [json.loads(r) for r in resume["metrics"]]
        _set_rng_state(resume["rng"], device)
        log.info("resuming at epoch %d, step %d of %d", start_epoch + 1, start_step, len(loader))
    dist.same_start(*trained)
    # metrics.jsonl holds exactly the epochs the state has (a kill between the two writes is undone)
    if main:
        atomic_write(files.metrics, "".join(json.dumps(r) + "\n" for r in rows))

    def state(epoch: int, step: int, running: Running | None) -> dict:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "epoch": epoch,
            "step": step,
            "running": running.as_dict() if running is not None else None,
            "model": model.state_dict(),
            "loss_fn": loss_fn.state_dict() if isinstance(loss_fn, nn.Module) else {},
            "peers": [p.state_dict() for p in peers],
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "best_val_acc": best_acc,
            "best_epoch": best_epoch,
            "images": images,
            "seconds": seconds,
            "calibrated": calibrated,
            "seed": seed,
            "rng": _rng_state(device),
            "metrics": [json.dumps(r) for r in rows],
            "extra": extra_state or {},
        }

    progress = settings.progress if main else "off"
    with _Signals() as signals, EpochProgress(settings.epochs, len(loader), progress) as bar:
        bar.skip(start_epoch * len(loader) + start_step)
        for epoch in range(start_epoch, settings.epochs):
            loader.set_epoch(epoch)
            t0 = time.perf_counter()
            first = start_step if epoch == start_epoch else 0
            base = running.seen if running is not None and epoch == start_epoch else 0  # images before a resume

            def on_step(step: int, run: Running, epoch: int = epoch, t0: float = t0, base: int = base) -> None:
                seen = max(run.seen, 1)
                bar.step(epoch, run.loss / seen, run.correct / seen, (run.seen - base) / (time.perf_counter() - t0))
                every = settings.save_every_steps
                last_step = step + 1 == len(loader)
                if main and (signals.received is not None or (every and (step + 1) % every == 0 and not last_step)):
                    save_state(files.state, state(epoch, step + 1, run))
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
                after_backward=(lambda: dist.average_gradients(params)) if dist.world_size() > 1 else None,
            )
            stats = _over_ranks(stats)
            scheduler.step()
            images, seconds = images + stats.images, seconds + stats.seconds
            if settings.bn_recalibrate:
                calib.set_epoch(epoch)
                calibrated = recalibrate_bn(model, calib, settings.bn_recalibrate_batches)
            dist.same_buffers(*trained)  # every rank evaluates and goes on with rank 0's statistics
            val_logits = predict(model, data.val_x, settings.eval_batch_size, device, channels_last=cl)
            val_acc = topk_accuracy(val_logits, data.val_y)
            row = {
                "epoch": epoch + 1,
                "train_loss": round(stats.loss, 6),
                "train_acc": round(stats.acc, 6),
                **{f"train_{k}": round(v, 6) for k, v in stats.parts.items()},
                "val_acc": round(val_acc, 6),
                "lr": optimizer.param_groups[0]["lr"],
                "images_per_s": round(stats.images_per_s, 1),
                "epoch_s": round(stats.seconds, 3),
            }
            rows.append(row)
            improved = val_acc > best_acc
            if improved:
                best_acc, best_epoch = val_acc, epoch + 1
            if main:
                atomic_write(files.metrics, "".join(json.dumps(r) + "\n" for r in rows))
                if on_epoch is not None:  # trackers (TensorBoard, MLflow)
                    on_epoch(row)
                save_weights(files.last, model, spec, config)
                if improved:
                    save_weights(files.best, model, spec, config)
                save_state(files.state, state(epoch + 1, 0, None))
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
    last_test = topk_accuracy(
        predict(model, data.test_x, settings.eval_batch_size, device, channels_last=cl), data.test_y
    )
    return FitResult(best_epoch, best_acc, last_test, images / max(seconds, 1e-9), seconds, calibrated)
