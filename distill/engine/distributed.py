"""Data-parallel training on torch.distributed, for runs started by torchrun.

``torchrun --nproc_per_node=N -m distill train ...`` starts N copies of the CLI; torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous (``MASTER_ADDR``/``MASTER_PORT``, or
``--rdzv-endpoint`` across nodes). Every rank trains on its shard of each epoch (torch's
``DistributedSampler``), gradients are averaged over the ranks after each backward, and only
rank 0 writes files. Without torchrun every function here is a no-op for one process.
"""

from __future__ import annotations

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


def same_start(*modules: nn.Module) -> None:
    """Rank 0's parameters and buffers everywhere (one starting point whatever each rank drew)."""
    if world_size() == 1:
        return
    for m in modules:
        for t in [*m.parameters(), *m.buffers()]:
            dist.broadcast(t.data, src=0)


def same_buffers(*modules: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) everywhere, before an evaluation or a checkpoint."""
    if world_size() == 1:
        return
    for m in modules:
        for b in m.buffers():
            dist.broadcast(b.data, src=0)


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Gradients averaged over the ranks, in one flat all-reduce (student, connectors and online
    peers alike: the optimizer's parameters, which are not all inside one module DDP could wrap)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def shard_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's sample positions for ``epoch``: torch's DistributedSampler (shuffled, padded so
    every rank has as many)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)
