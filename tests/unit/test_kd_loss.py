"""The KD loss against hand computations on seeded logits."""

import math

import pytest
import torch
import torch.nn.functional as F

from distill.losses.kd import KDLoss


def _logits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.randint(0, 4, (5,), generator=g)


def test_kl_matches_hand_computation():
    s, t, y = _logits()
    T, alpha = 3.0, 0.7
    loss, parts = KDLoss(T, alpha, "kl")(s, t, y)
    pt, ps = (t / T).softmax(1), (s / T).softmax(1)
    kl = float(sum(pt[i, j] * math.log(pt[i, j] / ps[i, j]) for i in range(5) for j in range(4))) / 5
    ce = -float(sum(math.log(s.softmax(1)[i, y[i]]) for i in range(5))) / 5
    assert loss.item() == pytest.approx(alpha * T * T * kl + (1 - alpha) * ce, rel=1e-5)
    assert parts["soft"].item() == pytest.approx(T * T * kl, rel=1e-5)
    assert parts["hard"].item() == pytest.approx(ce, rel=1e-5)


def test_soft_ce_has_kl_gradients():
    s, t, y = _logits(1)
    grads = []
    for kind in ("kl", "soft_ce"):
        x = s.clone().requires_grad_(True)
        KDLoss(2.0, 0.5, kind)(x, t, y)[0].backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_mse_compares_logits():
    s, t, y = _logits(2)
    loss, _ = KDLoss(4.0, 1.0, "mse")(s, t, y)
    assert loss.item() == pytest.approx(((s - t) ** 2).mean().item(), rel=1e-6)


def test_alpha_zero_is_plain_cross_entropy_without_teacher():
    s, _, y = _logits(3)
    loss, parts = KDLoss(4.0, 0.0)(s, None, y)
    assert loss.item() == pytest.approx(F.cross_entropy(s, y).item())
    assert set(parts) == {"hard"}


def test_zero_soft_loss_when_student_equals_teacher():
    s, _, y = _logits(4)
    _, parts = KDLoss(4.0, 0.5)(s, s.clone(), y)
    assert parts["soft"].item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_reaches_student_not_teacher():
    s, t, y = _logits(5)
    s.requires_grad_(True)
    t.requires_grad_(True)
    KDLoss(4.0, 0.9)(s, t.detach(), y)[0].backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_alpha_needs_teacher_logits():
    s, _, y = _logits()
    with pytest.raises(ValueError):
        KDLoss(4.0, 0.5)(s, None, y)
