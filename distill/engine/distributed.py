"""Data-parallel training on torch.distributed, for runs started by torchrun.

``torchrun --nproc_per_node=N -m distill train ...`` starts N copies of the CLI; torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous (``MASTER_ADDR``/``MASTER_PORT``, or
``--rdzv-endpoint`` across nodes). Every rank trains on its shard of each epoch (torch's
``DistributedSampler``) and only rank 0 writes files. Without torchrun every function here is a
no-op for one process, and the training step runs with no wrapper at all.

Gradients are averaged by torch's own engine, :class:`~torch.nn.parallel.DistributedDataParallel`
(:func:`data_parallel`), over one module that holds everything a step trains: the student, the
method's connectors, heads and memory banks, and the online peers
(:class:`distill.engine.loop.TrainedParts`, whose forward is the whole step from images to loss,
so the step's forward goes through DDP's and prepares the reduction of every trained parameter).
DDP groups the gradients into buckets (about 25 MiB; after the first step in the order backward
produces them) and all-reduces each bucket, as a mean over the ranks, as soon as backward has
filled it: communication overlaps the rest of the backward pass. The trainer has no gradient
accumulation, so no step needs ``no_sync()``.

Buffers (BatchNorm running statistics, CRD's memory banks) are rank 0's at the start and are not
broadcast at every forward: each rank normalises with the statistics of its own batch of
``trainer.batch_size`` images (plain BatchNorm, not SyncBatchNorm) and keeps its running
statistics, and :func:`same_buffers` copies rank 0's everywhere before each evaluation and
checkpoint. Rank 0's statistics are the same as with DDP's default per-step broadcast (which
never overwrites rank 0); the broadcast would cost a copy of every buffer per step (CRD's banks are
``num_samples x feat_dim`` each) and would erase the other ranks' bank updates at every step
(:func:`same_buffers` does so once an epoch).

Students too large for one device would be sharded with FSDP (``torch.distributed.fsdp``) over
the same process group and the same ``TrainedParts`` module: the next step on this engine, not
built here.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init() -> None:
    """Joins the process group torchrun describes (gloo for CPU tensors, NCCL for CUDA ones)."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)


def device_for(device: torch.device) -> torch.device:
    """This rank's device: CUDA device LOCAL_RANK under torchrun."""
    if device.type == "cuda" and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_floats(values: list[float]) -> list[float]:
    """Each value summed over the ranks (epoch statistics)."""
    if world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def same_buffers(*modules: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) everywhere, before an evaluation or a checkpoint."""
    if world_size() == 1:
        return
    for m in modules:
        for b in m.buffers():
            dist.broadcast(b.data, src=0)


def data_parallel(module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
    """``module`` in :class:`~torch.nn.parallel.DistributedDataParallel` under torchrun; ``module``
    itself (no wrapper, no overhead) for one process.

    ``module`` must be on this rank's device (init() made ``LOCAL_RANK`` the current CUDA device),
    so ``device_ids`` stays None and DDP moves no inputs. Wrapping broadcasts rank 0's parameters
    and buffers: every rank starts from rank 0's weights, or from the state it resumed. Buffers are
    not broadcast again at each forward (see the module's docstring). ``find_unused_parameters``:
    whether some steps leave trained parameters out of the loss (a two-stage method); DDP then
    searches each step's autograd graph for them and leaves the gradients of parameters no rank
    used as they are (None), as one process would.
    """
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    # torch 2.13 renamed the per-forward switch; the old one also keeps buffers out of the first sync
    modern = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    buffers = {"forward_sync_buffers": False} if modern else {"broadcast_buffers": False}
    wrapped = DistributedDataParallel(module, find_unused_parameters=find_unused_parameters, **buffers)
    if not modern:
        same_buffers(module)
    return wrapped


def shard_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's sample positions for ``epoch``: torch's DistributedSampler (shuffled, padded so
    every rank has as many)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)
