"""Compression pieces: low-rank factorization is exact at the weight's rank; the Pareto front."""

import torch
from torch import nn

from distill.compress.lowrank import factorize
from distill.stages.compare import pareto


def test_factorization_at_the_weights_rank_is_exact():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 4 * 4, 64))
    with torch.no_grad():  # weights of rank 4
        w = net[0].weight.reshape(32, -1)
        net[0].weight.copy_((w[:, :4] @ torch.randn(4, w.shape[1])).reshape_as(net[0].weight))
        net[3].weight.copy_(torch.randn(64, 4) @ torch.randn(4, 512))
    x = torch.randn(2, 8, 4, 4)
    before = net(x)
    params = sum(p.numel() for p in net.parameters())
    assert factorize(net, 4 / 32) == 2  # rank 4 of min(32, 72) for the conv, 8 of 64 for the linear
    assert isinstance(net[0], nn.Sequential) and net[0][0].out_channels == 4
    assert torch.allclose(net(x), before, atol=1e-4)
    assert sum(p.numel() for p in net.parameters()) < params


def test_no_factorization_where_it_would_not_save():
    net = nn.Sequential(nn.Linear(4, 4))
    assert factorize(net, 1.0) == 0 and isinstance(net[0], nn.Linear)


def test_pareto_front_keeps_only_undominated_candidates():
    rows = [
        {"test_acc": 0.95, "latency_b1_ms": 1.0},  # front
        {"test_acc": 0.90, "latency_b1_ms": 0.1},  # front
        {"test_acc": 0.90, "latency_b1_ms": 0.5},  # dominated by the second
        {"test_acc": 0.95, "latency_b1_ms": 2.0},  # dominated by the first
    ]
    pareto(rows)
    assert [r["pareto"] for r in rows] == [True, True, False, False]
