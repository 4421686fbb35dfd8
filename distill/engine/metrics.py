"""Accuracy, calibration and speed measurements."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 1) -> float:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == y[:, None]).any(dim=1).float().mean().item()


def expected_calibration_error(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al. 2017, "On Calibration of Modern Neural Networks")."""
    probs = logits.float().softmax(dim=1)
    conf, pred = probs.max(dim=1)
    correct = (pred == y).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (conf[in_bin].mean() - correct[in_bin].mean()).abs()
    return ece.item()


@torch.no_grad()
def latency_ms(
    model: nn.Module, example: torch.Tensor, repeats: int = 30, warmup: int = 5, budget_s: float = 1.0, least: int = 5
) -> float:
    """Median wall time of one forward pass on ``example`` (eval mode), in milliseconds.

    Up to ``repeats`` timed passes, but no more once ``least`` of them have taken ``budget_s``:
    a big teacher on a CPU is measured in seconds, not the minute 30 slow passes would take.
    """
    model.eval()
    for _ in range(warmup):
        model(example)
    times: list[float] = []
    while len(times) < repeats and (len(times) < least or sum(times) < budget_s):
        t0 = time.perf_counter()
        model(example)
        if example.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def speed(model: nn.Module, image: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Latency per image at batch 1 and inference throughput at ``batch_size`` (images/s), each
    the median of repeated passes after warm-up, within a time budget of about a second each."""
    one = image[:1]
    batch = image[:1].expand(batch_size, *image.shape[1:]).contiguous()
    lat1 = latency_ms(model, one, warmup=3)
    lat_b = latency_ms(model, batch, repeats=10, warmup=1, least=3)
    return {"latency_ms": round(lat1, 4), "images_per_s": round(batch_size / (lat_b / 1000), 1)}
