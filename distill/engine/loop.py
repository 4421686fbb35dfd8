"""One training epoch, prediction and BatchNorm recalibration: the loop every stage shares."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from distill.data.augment import mix_batch
from distill.data.streaming import LazyImages
from distill.engine.batches import BatchLoader
from distill.engine.taps import Taps
from distill.errors import Diverged


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for ``precision`` in ``{"32", "bf16-mixed", "16-mixed"}``."""
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class EpochStats:
    loss: float
    acc: float
    images: int
    seconds: float
    parts: dict[str, float]

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)


@dataclass
class Running:
    """An epoch's sums so far (saved in a mid-epoch state, so a resumed epoch reports the same figures)."""

    loss: float = 0.0  # sum over images of the loss
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)

    def add(self, loss: float, correct: int, n: int, parts: dict[str, float]) -> None:
        self.loss, self.correct, self.seen = self.loss + loss * n, self.correct + correct, self.seen + n
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + v * n

    def stats(self) -> EpochStats:
        seen = max(self.seen, 1)
        return EpochStats(
            self.loss / seen, self.correct / seen, self.seen, self.seconds, {k: v / seen for k, v in self.parts.items()}
        )

    def as_dict(self) -> dict:
        return asdict(self)


class Teachers:
    """The teacher side of a training step: one or more teachers and the taps on the first.

    A teacher is a module called on the batch's images (a network, an ONNX session), or, when it
    has ``takes_index = True``, on the batch's sample positions (precomputed logits). Frozen
    teachers run without autograd. ``online`` teachers are trained in the same steps as the
    student (their parameters are in its optimizer) on ``peer_loss(peer_logits, student_logits, y)``:
    by default each peer's cross-entropy on the labels; the method that trains them may pass its own
    (deep mutual learning: :func:`distill.losses.mutual.peer_loss`). The student always sees their
    outputs detached.
    """

    def __init__(
        self,
        models: list,
        taps: Taps | None = None,
        *,
        online: bool = False,
        peer_loss: Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        precision: str | None = None,
    ) -> None:
        self.models, self.taps = list(models), taps
        self.online, self._peer_loss = online, peer_loss
        self.precision = precision  # frozen teachers' inference precision (None: the student's)

    @property
    def takes_index(self) -> bool:
        return any(getattr(m, "takes_index", False) for m in self.models)

    def train(self, epoch: int = 0) -> None:
        for m in self.models:
            if self.online:
                m.train()
            if hasattr(m, "set_epoch"):  # a teacher cache: which stored view this epoch reads
                m.set_epoch(epoch)

    def __call__(
        self, x: torch.Tensor, index: torch.Tensor | None, device: torch.device, precision: str
    ) -> tuple[torch.Tensor | list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        """Returns the logits the student learns from, the tapped features, and (online) the
        peers' own logits with autograd."""
        teacher_precision = precision if self.online or self.precision is None else self.precision
        with torch.set_grad_enabled(self.online), autocast(device, teacher_precision):
            outs = [m(index) if getattr(m, "takes_index", False) else m(x) for m in self.models]
        if self.taps is not None:
            feats = [f.detach() for f in self.taps.take()]
        else:  # a teacher cache stores the tapped features with the logits
            feats = self.models[0].feats(index) if hasattr(self.models[0], "feats") else []
        seen = [o.detach() for o in outs]
        return (seen[0] if len(seen) == 1 else seen), feats, (outs if self.online else None)

    def peer_loss(self, peer_logits: list[torch.Tensor], s_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The online peers' own loss (``y``: labels or, under mixup/cutmix, soft targets (B, K))."""
        if self._peer_loss is not None:
            return self._peer_loss(peer_logits, s_logits, y)
        return sum(F.cross_entropy(p.float(), y) for p in peer_logits)


class TrainedParts(nn.Module):
    """Everything a training step trains, as one module, and the step's forward pass.

    It holds the student, the loss (a method's connectors, heads and memory banks) and the online
    peers, and only them: frozen teachers and the student's taps are used, not held (no trained
    parameters, no buffers to share). ``forward(x, y, ...)`` is the whole step from a batch to its
    loss: the teachers, the student (its taps are forward hooks on its own layers, so they fire
    inside), the loss with its method, and the peers' loss; it returns ``(loss, parts,
    student_logits)``, the logits detached (they only count correct answers): DDP looks for the
    parameters a step leaves out in the graph of what forward returns, which is then the loss's.
    Under torchrun this module is what :func:`distill.engine.distributed.data_parallel` wraps: one
    DistributedDataParallel forward covers every parameter the optimizer steps. ``student`` may be
    a compiled module (the same parameters as the eager one); checkpoints are written from the eager
    modules, never from this one, so their keys carry no prefix.
    """

    def __init__(
        self,
        student: nn.Module,
        loss_fn: Callable,
        teachers: Teachers | None = None,
        student_taps: Taps | None = None,
    ) -> None:
        super().__init__()
        self.student = student
        self.loss_fn = loss_fn  # registered when a module (its method's parts), kept as is when a plain function
        self.peers = nn.ModuleList(teachers.models if teachers is not None and teachers.online else [])
        self.teachers, self.student_taps = teachers, student_taps

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        index: torch.Tensor | None = None,
        y_soft: torch.Tensor | None = None,
        epoch: int = 0,
        precision: str = "32",
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        teachers = self.teachers
        t_logits, t_feats, peers = teachers(x, index, x.device, precision) if teachers is not None else (None, [], None)
        with autocast(x.device, precision):
            s_logits = self.student(x)
        s_feats = self.student_taps.take() if self.student_taps is not None else []
        loss, parts = self.loss_fn(
            s_logits, t_logits, y, s_feats=s_feats, t_feats=t_feats, index=index, epoch=epoch, y_soft=y_soft
        )
        if peers is not None:
            peer_loss = teachers.peer_loss(peers, s_logits, y if y_soft is None else y_soft)
            loss = loss + peer_loss
            parts = {**parts, "peers": peer_loss.detach()}
        return loss, parts, s_logits.detach()


def leaves_parts_out(loss_fn: Callable, epochs: int) -> bool:
    """Whether some training step of ``epochs`` leaves trained parameters out of the loss: a method
    with a hint stage (two-stage FitNets: the student's head waits for the second stage, the
    connectors stop after the first), or a method with parameters whose term is off (``beta`` 0: the
    loss never reads it). Every other method uses all its parameters at every step."""
    method = getattr(loss_fn, "method", None)
    if method is None:
        return False
    beta = getattr(loss_fn, "beta", 0)
    if beta <= 0:
        return any(True for _ in method.parameters())
    hint_only = getattr(method, "hint_only", None)
    return hint_only is not None and any(hint_only(e) for e in range(epochs))


def train_one_epoch(
    student: nn.Module,
    loss_fn: Callable,
    loader: BatchLoader,
    optimizer: torch.optim.Optimizer,
    *,
    teachers: Teachers | None = None,
    student_taps: Taps | None = None,
    precision: str = "32",
    scaler: torch.amp.GradScaler | None = None,
    on_step: Callable[[int, Running], None] | None = None,
    epoch: int = 0,
    mix: tuple[str, float, int] | None = None,
    start_step: int = 0,
    running: Running | None = None,
    parts: nn.Module | None = None,
    grad_clip: float | None = None,
) -> EpochStats:
    """Trains ``student`` for one pass over ``loader``, from batch ``start_step`` on (a resumed epoch,
    whose sums so far are ``running``).

    ``loss_fn(s_logits, t_logits, y, s_feats=, t_feats=, index=, epoch=, y_soft=)`` returns
    ``(loss, parts)`` (see :class:`distill.losses.combined.DistillLoss`). The teachers see exactly
    the student's batch, augmented and (with ``mix = (kind, alpha, num_classes)``) mixed. A NaN or
    infinite loss stops the run with a :class:`Diverged` error naming the epoch and step, before the
    step changes any weight. ``parts`` computes each step's loss: by default the
    :class:`TrainedParts` of these arguments; under torchrun the same in DistributedDataParallel
    (which averages the gradients over the ranks during backward). ``grad_clip``: the largest norm
    of all gradients together a step may take (:func:`torch.nn.utils.clip_grad_norm_`; None: no limit).
    ``on_step(step, running)`` runs after every step.
    """
    parts = parts if parts is not None else TrainedParts(student, loss_fn, teachers, student_taps)
    parts.train()
    if teachers is not None:
        teachers.train(epoch)
    running = running if running is not None else Running()
    tick = time.perf_counter()
    for step, batch in enumerate(loader.batches(start_step), start=start_step):
        x, y = batch[0], batch[1]
        index = batch[2] if len(batch) > 2 else None
        y_soft = None
        if mix is not None:
            kind, alpha, num_classes = mix
            x, y_soft, y = mix_batch(x, y, num_classes, kind, alpha, loader.seed * 1_000_003 + epoch * 10_007 + step)
        loss, terms, s_logits = parts(x, y, index, y_soft, epoch, precision)
        loss_v = loss.item()
        if not math.isfinite(loss_v):
            raise Diverged(
                f"loss became {loss_v} at epoch {epoch + 1}, step {step + 1}; lower optim.lr "
                f"(now {optimizer.param_groups[0]['lr']:g}) or distill.temperature"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                _clip(optimizer, grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip is not None:
                _clip(optimizer, grad_clip)
            optimizer.step()
        correct = int((s_logits.argmax(1) == y).sum().item())
        running.add(loss_v, correct, len(y), {k: v.item() for k, v in terms.items()})
        now = time.perf_counter()
        running.seconds, tick = running.seconds + now - tick, now
        if on_step is not None:  # its time (progress, a mid-epoch checkpoint) counts in the next step's
            on_step(step, running)
    return running.stats()


def _clip(optimizer: torch.optim.Optimizer, max_norm: float) -> None:
    """Scales the gradients of ``optimizer``'s parameters down to a total norm of ``max_norm``."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    torch.nn.utils.clip_grad_norm_(params, max_norm)


# On a CPU an evaluation batch holds at most this many pixels (512 images of 32x32): at 224 px, 512
# images would hold a resnet's activations in gigabytes, growing with the split up to 512 images,
# for no gain in speed; on a GPU the batch is as configured.
CPU_EVAL_PIXELS = 512 * 32 * 32


def eval_batch(batch_size: int, x: torch.Tensor | LazyImages, device: str | torch.device) -> int:
    """The batch size to run a frozen model over ``x`` with: ``batch_size`` (trainer.eval_batch_size),
    on a CPU no more than :data:`CPU_EVAL_PIXELS` pixels' worth of images and no fewer than 32."""
    if torch.device(device).type != "cpu":
        return batch_size
    height, width = x.shape[-2:]
    return min(batch_size, max(32, CPU_EVAL_PIXELS // (height * width)))


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor | LazyImages,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    precision: str = "32",
    channels_last: bool = False,
    num_workers: int = 0,
) -> torch.Tensor:
    """Logits (float32, on the CPU) of ``model`` in eval mode for uint8 images ``x``; images streamed
    from files are decoded in ``num_workers`` processes (trainer.num_workers) when there are more
    than 64 of them."""
    workers = num_workers if isinstance(x, LazyImages) and len(x) > 64 else 0
    loader = BatchLoader(
        x,
        torch.zeros(len(x), dtype=torch.long),
        eval_batch(batch_size, x, device),
        shuffle=False,
        device=device,
        channels_last=channels_last,
        num_workers=workers,
    )
    was_training = model.training
    model.eval()
    outs = []
    for xb, *_ in loader:
        with autocast(torch.device(device), precision):
            outs.append(model(xb).float().cpu())
    model.train(was_training)
    return torch.cat(outs)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: BatchLoader, max_batches: int) -> int:
    """Recomputes BatchNorm running statistics as exact averages over training batches.

    Short runs leave running statistics close to their initial values when a model keeps a small
    BatchNorm momentum (torchvision's MobileNetV3 uses 0.01): eval-mode accuracy is then far below
    the truth. Re-estimating them on training images before each evaluation reports what the
    weights really do. Only BatchNorm layers are put in train mode; nothing else changes.

    Returns:
        The number of images used (0 if the model has no BatchNorm).
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = model.training
    model.eval()
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: an exact mean over the batches seen
        m.train()
    seen = 0
    for i, (x, *_) in enumerate(loader):
        if i >= max_batches:
            break
        model(x)
        seen += len(x)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.train(was_training)
    return seen
