"""Distillation methods: hand computations and invariances, gradient flow, and every feature layout."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distill.losses.at import AttentionTransfer
from distill.losses.base import DistillInputs, Method
from distill.losses.byot import SelfDistillation
from distill.losses.connectors import as_map, as_target, as_vector, make_connector, pair_up
from distill.losses.crd import CRD
from distill.losses.dist import DIST
from distill.losses.dkd import DKD
from distill.losses.fitnet import FitNet
from distill.losses.kd import KDLoss
from distill.losses.multi_teacher import MultiTeacherKD
from distill.losses.mutual import mutual_losses
from distill.losses.pkt import PKT
from distill.losses.rkd import RKD
from distill.losses.sp import SimilarityPreserving

B, K = 4, 5

# (student shapes, teacher shapes) with the batch dimension: maps of other channels and sizes (student
# smaller, then larger than the teacher), vectors, ViT tokens (1 CLS + 4x4), and mixes of layouts and counts.
LAYOUTS = {
    "maps": ([(B, 8, 8, 8), (B, 16, 4, 4)], [(B, 12, 16, 16), (B, 24, 2, 2)]),
    "vectors": ([(B, 10)], [(B, 20)]),
    "tokens": ([(B, 17, 6), (B, 17, 6)], [(B, 17, 8), (B, 17, 8)]),
    "tokens_to_maps": ([(B, 17, 6)], [(B, 12, 8, 8)]),
    "map_to_vector": ([(B, 8, 4, 4)], [(B, 20)]),
    "vector_to_map": ([(B, 10)], [(B, 12, 4, 4)]),
    "counts_differ": ([(B, 8, 8, 8), (B, 16, 4, 4)], [(B, 4, 16, 16), (B, 12, 8, 8), (B, 24, 4, 4)]),
}
MAP_LAYOUTS = ["maps", "tokens", "tokens_to_maps", "counts_differ"]


def _randn(*shape: int, seed: int, grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).requires_grad_(grad)


def _feats(shapes: list[tuple[int, ...]], seed: int, grad: bool = True) -> list[torch.Tensor]:
    return [_randn(*s, seed=seed + k, grad=grad) for k, s in enumerate(shapes)]


def _batch(s_feats=(), t_feats=(), s=None, t=None, seed: int = 0, **kw) -> DistillInputs:
    s = _randn(B, K, seed=seed + 100, grad=True) if s is None else s
    y = torch.arange(B) % K
    return DistillInputs(s, t, y, list(s_feats), list(t_feats), **kw)


def _built(method: Method, s_feats, t_feats, num_samples: int = 32) -> Method:
    method.build([tuple(f.shape[1:]) for f in s_feats], [tuple(f.shape[1:]) for f in t_feats], K, num_samples)
    return method


def _check_gradient_flow(method: Method, b: DistillInputs) -> dict[str, torch.Tensor]:
    """Backward through the terms: every student feature the method reads (CRD: the last) and every learned
    parameter gets a finite gradient, no teacher tensor gets one."""
    terms = method(b)
    total = sum(terms.values())
    assert total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    for f in b.s_feats[-1:] if isinstance(method, CRD) else b.s_feats:
        assert f.grad is not None and torch.isfinite(f.grad).all()
    for f in b.t_feats:
        assert f.grad is None
    for name, p in method.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    return terms


# --- connectors -------------------------------------------------------------------------------------


def test_as_map_drops_cls_token_or_uses_all():
    tokens = _randn(2, 17, 3, seed=0)
    m = as_map(tokens)
    assert m.shape == (2, 3, 4, 4)
    torch.testing.assert_close(m[:, :, 1, 2], tokens[:, 1 + 1 * 4 + 2])
    assert as_map(_randn(2, 16, 3, seed=1)).shape == (2, 3, 4, 4)
    assert as_map(_randn(2, 3, 5, 5, seed=2)).shape == (2, 3, 5, 5)
    with pytest.raises(ValueError):
        as_map(_randn(2, 12, 3, seed=3))
    with pytest.raises(ValueError):
        as_map(_randn(2, 7, seed=4))


def test_as_vector_pools_maps_and_tokens():
    m = _randn(2, 3, 4, 4, seed=0)
    torch.testing.assert_close(as_vector(m), m.mean(dim=(2, 3)))
    tok = _randn(2, 5, 3, seed=1)
    torch.testing.assert_close(as_vector(tok), tok.mean(dim=1))
    assert as_vector(_randn(2, 7, seed=2)).shape == (2, 7)


@pytest.mark.parametrize(
    "n_s, n_t, pairs",
    [
        (3, 3, [(0, 0), (1, 1), (2, 2)]),
        (2, 4, [(0, 1), (1, 3)]),
        (4, 2, [(1, 0), (3, 1)]),
        (1, 3, [(0, 2)]),
        (0, 2, []),
    ],
)
def test_pair_up(n_s, n_t, pairs):
    assert pair_up(n_s, n_t) == pairs


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_connectors_reach_the_teacher_shape(layout):
    s_shapes, t_shapes = LAYOUTS[layout]
    for i, j in pair_up(len(s_shapes), len(t_shapes)):
        conn = make_connector(s_shapes[i][1:], t_shapes[j][1:])
        out = conn(_randn(*s_shapes[i], seed=0).to(torch.bfloat16))
        target = as_target(_randn(*t_shapes[j], seed=1), out)
        assert out.dtype == torch.float32 and out.shape == target.shape


# --- per-method properties and hand computations ----------------------------------------------------------


def test_attention_transfer_hand_computation():
    # one 1x2 map: a_s = [1, 4] / sqrt(17), a_t = [4, 1] / sqrt(17): mean of squares = 9/17
    s, t = torch.tensor([[[[1.0, 2.0]]]]), torch.tensor([[[[2.0, 1.0]]]])
    terms = AttentionTransfer(p=2, weight=10.0)(_batch([s], [t]))
    assert terms["at"].item() == pytest.approx(10.0 * 9 / 17, rel=1e-6)


def test_attention_transfer_pools_the_larger_map_and_reads_tokens():
    s = _randn(B, 3, 8, 8, seed=0)
    t = _randn(B, 5, 4, 4, seed=1)
    at = AttentionTransfer()
    pooled = at(_batch([F.adaptive_avg_pool2d(s, 4)], [t]))["at"]
    torch.testing.assert_close(at(_batch([s], [t]))["at"], pooled)
    assert at(_batch([t.clone()], [t]))["at"].item() == pytest.approx(0.0, abs=1e-9)
    tokens = torch.cat([_randn(B, 1, 5, seed=2), t.flatten(2).transpose(1, 2)], dim=1)  # CLS + 4x4 grid
    assert at(_batch([tokens], [t]))["at"].item() == pytest.approx(0.0, abs=1e-9)


def test_attention_transfer_refuses_vectors():
    with pytest.raises(ValueError, match="feature maps"):
        AttentionTransfer().build([(10,)], [(20,)], K, 32)


def test_similarity_preserving_zero_for_equal_and_rescaled_features():
    f = _randn(B, 6, 3, 3, seed=0)
    sp = SimilarityPreserving()
    assert sp(_batch([f], [f.clone()]))["sp"].item() == pytest.approx(0.0, abs=1e-6)
    assert sp(_batch([3 * f], [f]))["sp"].item() == pytest.approx(0.0, abs=1e-6)
    g = _randn(B, 2, 4, seed=1)
    gs, gt = F.normalize(f.flatten(1) @ f.flatten(1).t()), F.normalize(g.flatten(1) @ g.flatten(1).t())
    expected = 3000.0 * ((gs - gt) ** 2).sum() / B**2
    assert sp(_batch([f], [g]))["sp"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_rkd_zero_for_equal_or_scaled_embeddings():
    e = _randn(6, 10, seed=0)
    rkd = RKD()
    for s in (e.clone(), 2.5 * e):
        terms = rkd(_batch([s], [e]))
        assert terms["rkd_distance"].item() == pytest.approx(0.0, abs=1e-5)
        assert terms["rkd_angle"].item() == pytest.approx(0.0, abs=1e-5)
    terms = rkd(_batch([_randn(6, 10, seed=1)], [e]))
    assert terms["rkd_distance"].item() > 0 and terms["rkd_angle"].item() > 0


def test_pkt_zero_for_equal_embeddings_and_hand_value():
    e = _randn(B, 7, seed=0)
    pkt = PKT(weight=1.0)
    assert pkt(_batch([e], [e.clone()]))["pkt"].item() == pytest.approx(0.0, abs=1e-6)
    s = _randn(B, 3, seed=1)

    def probs(x):
        u = x / (x.norm(dim=1, keepdim=True) + 1e-7)
        k = (u @ u.t() + 1) / 2
        return k / k.sum(1, keepdim=True)

    ps, pt = probs(s), probs(e)
    expected = (pt * torch.log((pt + 1e-7) / (ps + 1e-7))).mean()
    assert pkt(_batch([s], [e]))["pkt"].item() == pytest.approx(expected.item(), rel=1e-5)


def _dkd_by_hand(s: list[float], t: list[float], y: int, T: float) -> tuple[float, float]:
    def softmax(z):
        e = [math.exp(v / T) for v in z]
        return [v / sum(e) for v in e]

    ps, pt = softmax(s), softmax(t)
    tckd = pt[y] * math.log(pt[y] / ps[y]) + (1 - pt[y]) * math.log((1 - pt[y]) / (1 - ps[y]))
    qs = [p / (1 - ps[y]) for k, p in enumerate(ps) if k != y]
    qt = [p / (1 - pt[y]) for k, p in enumerate(pt) if k != y]
    nckd = sum(a * math.log(a / b) for a, b in zip(qt, qs))
    return T * T * tckd, T * T * nckd


def test_dkd_hand_computation_and_warmup():
    s, t, T = [1.0, -0.5, 2.0, 0.3], [2.5, 0.1, -1.0, 0.7], 2.0
    tckd, nckd = _dkd_by_hand(s, t, 0, T)
    dkd = DKD(alpha=1.5, beta=8.0, temperature=T, warmup_epochs=4)
    b = DistillInputs(torch.tensor([s]), torch.tensor([t]), torch.tensor([0]), epoch=3)
    terms = dkd(b)
    assert terms["tckd"].item() == pytest.approx(1.5 * tckd, rel=1e-5)
    assert terms["nckd"].item() == pytest.approx(8.0 * nckd, rel=1e-5)
    b.epoch = 0  # mdistiller's first epoch: factor 1/warmup
    assert dkd(b)["nckd"].item() == pytest.approx(8.0 * nckd / 4, rel=1e-5)


def test_dkd_recombines_into_classic_kd_and_vanishes_for_equal_logits():
    s, t = _randn(1, K, seed=0), _randn(1, K, seed=1)
    y = torch.tensor([2])
    terms = DKD(alpha=1.0, beta=1.0, temperature=3.0, warmup_epochs=0)(DistillInputs(s, t, y))
    p_target = F.softmax(t / 3.0, dim=1)[0, 2].item()
    kd = KDLoss(3.0, 1.0).soft(s, t)
    assert (terms["tckd"] + (1 - p_target) * terms["nckd"]).item() == pytest.approx(kd.item(), rel=1e-5)
    same = DKD()(DistillInputs(s, s.clone(), y, epoch=50))
    assert sum(same.values()).item() == pytest.approx(0.0, abs=1e-6)


def test_dist_zero_for_equal_logits_and_hand_value():
    s, t = _randn(B, K, seed=0), _randn(B, K, seed=1)
    dist = DIST(beta=2.0, gamma=3.0, temperature=2.0)
    same = dist(_batch(s=s, t=s.clone()))
    assert same["dist_inter"].item() == pytest.approx(0.0, abs=1e-4)  # float32 rounding, times gamma T^2 = 12
    assert same["dist_intra"].item() == pytest.approx(0.0, abs=1e-4)
    ys, yt = (s / 2).softmax(1), (t / 2).softmax(1)
    inter = 1 - torch.stack([torch.corrcoef(torch.stack([ys[i], yt[i]]))[0, 1] for i in range(B)]).mean()
    intra = 1 - torch.stack([torch.corrcoef(torch.stack([ys[:, k], yt[:, k]]))[0, 1] for k in range(K)]).mean()
    terms = dist(_batch(s=s, t=t))
    assert terms["dist_inter"].item() == pytest.approx(2.0 * 4 * inter.item(), rel=1e-4)
    assert terms["dist_intra"].item() == pytest.approx(3.0 * 4 * intra.item(), rel=1e-4)


def test_fitnet_zero_with_identity_connector_and_two_stage_schedule():
    f = _randn(B, 6, 4, 4, seed=0)
    fit = _built(FitNet(), [f], [f])
    conv, bn = fit.connectors[0].body
    with torch.no_grad():
        conv.weight.copy_(torch.eye(6).view(6, 6, 1, 1))
    fit.eval()  # BatchNorm with its initial running stats (mean 0, var 1) is the identity up to eps
    assert fit(_batch([f], [f.clone()]))["hint"].item() == pytest.approx(0.0, abs=1e-6)
    two = FitNet(hint_epochs=2)
    assert two.hint_only(0) and two.hint_only(1) and not two.hint_only(2)
    _built(two, [f], [f])
    assert two(_batch([f], [f], epoch=1))["hint"].item() > 0
    assert two(_batch([f], [f], epoch=2))["hint"].item() == 0.0


def test_multi_teacher_modes():
    s = _randn(B, K, seed=0)
    t1, t2 = _randn(B, K, seed=1), _randn(B, K, seed=2)
    for mode in ("weighted", "average"):
        same = MultiTeacherKD(mode=mode)(_batch(s=s, t=[s.clone(), s.clone()]))
        assert same["multi_kd"].item() == pytest.approx(0.0, abs=1e-6)
    one = MultiTeacherKD(temperatures=[2.0, 5.0], weights=[3.0, 0.0])(_batch(s=s, t=[t1, t2]))
    assert one["multi_kd"].item() == pytest.approx(KDLoss(2.0, 1.0).soft(s, t1).item(), rel=1e-5)
    both = MultiTeacherKD(temperatures=[2.0, 5.0])(_batch(s=s, t=[t1, t2]))
    expected = 0.5 * (KDLoss(2.0, 1.0).soft(s, t1) + KDLoss(5.0, 1.0).soft(s, t2))
    assert both["multi_kd"].item() == pytest.approx(expected.item(), rel=1e-5)
    mean_p = ((t1 / 4).softmax(1) + (t2 / 4).softmax(1)) / 2
    by_hand = 16 * (mean_p * (mean_p.log() - (s / 4).log_softmax(1))).sum(1).mean()
    avg = MultiTeacherKD(mode="average")(_batch(s=s, t=[t1, t2]))
    assert avg["multi_kd"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    with pytest.raises(ValueError):
        MultiTeacherKD(weights=[1.0])(_batch(s=s, t=[t1, t2]))


def test_multi_teacher_gradients_reach_student_only():
    s = _randn(B, K, seed=0, grad=True)
    ts = [_randn(B, K, seed=k, grad=True) for k in (1, 2)]
    MultiTeacherKD()(_batch(s=s, t=ts))["multi_kd"].backward()
    assert s.grad is not None and all(t.grad is None for t in ts)


def test_mutual_losses():
    z = [_randn(B, K, seed=k, grad=True) for k in range(3)]
    y = torch.arange(B) % K
    same = mutual_losses([z[0], z[0].detach().clone()], y)
    assert same[0].item() == pytest.approx(F.cross_entropy(z[0], y).item(), rel=1e-6)
    losses = mutual_losses(z, y, temperature=2.0)
    kl = [F.kl_div((z[0] / 2).log_softmax(1), (z[j] / 2).softmax(1), reduction="batchmean") for j in (1, 2)]
    expected = F.cross_entropy(z[0], y) + 4 * (kl[0] + kl[1]) / 2
    assert losses[0].item() == pytest.approx(expected.item(), rel=1e-5)
    losses[0].backward()  # a peer's loss trains that peer only
    assert z[0].grad is not None and z[1].grad is None and z[2].grad is None


def test_byot_needs_no_teacher_and_trains_heads_not_the_deepest_parts():
    assert SelfDistillation.uses_teacher is False
    feats = _feats([(B, 8, 8, 8), (B, 12, 4, 4), (B, 17, 6), (B, 16, 2, 2)], seed=0)
    s = _randn(B, K, seed=9, grad=True)
    byot = _built(SelfDistillation(), feats, [])
    assert len(byot.heads) == 3
    terms = byot(_batch(feats, [], s=s))
    assert set(terms) == {"byot_ce", "byot_kd", "byot_hint"}
    sum(terms.values()).backward()
    assert all(f.grad is not None for f in feats[:-1])
    assert feats[-1].grad is None and s.grad is None  # the deepest tap and logits only teach
    assert all(p.grad is not None for p in byot.parameters())


def test_byot_terms_by_hand():
    feats = _feats([(B, 10), (B, 6)], seed=0, grad=False)
    s = _randn(B, K, seed=5)
    byot = _built(SelfDistillation(temperature=2.0, alpha=0.25, feature_weight=0.5), feats, [])
    h, z = byot.heads[0](feats[0])
    y = torch.arange(B) % K
    terms = byot(_batch(feats, [], s=s))
    assert terms["byot_ce"].item() == pytest.approx(0.75 * F.cross_entropy(z, y).item(), rel=1e-5)
    kd = KDLoss(2.0, 1.0).soft(z, s)
    assert terms["byot_kd"].item() == pytest.approx(0.25 * kd.item(), rel=1e-5)
    assert terms["byot_hint"].item() == pytest.approx(0.5 * ((h - feats[1]) ** 2).sum(1).mean().item(), rel=1e-5)


# --- CRD ---------------------------------------------------------------------------------------------------


def _crd(num_samples: int = 50, nce_k: int = 16, seed: int = 0) -> tuple[CRD, list, list]:
    torch.manual_seed(seed)
    s, t = _feats([(B, 10)], seed=1), _feats([(B, 3, 4, 4)], seed=2)
    return _built(CRD(feat_dim=8, nce_k=nce_k), s, t, num_samples), s, t


def test_crd_negatives_exclude_the_positive_and_are_capped():
    crd, _, _ = _crd(num_samples=5, nce_k=100)
    index = torch.tensor([0, 2, 4, 4])
    for _ in range(20):
        neg = crd.sample_negatives(index)
        assert neg.shape == (4, 4)  # capped at N - 1
        assert (neg != index[:, None]).all() and neg.min() >= 0 and neg.max() < 5


def test_crd_updates_the_banks_at_the_batch_indices_only():
    crd, s, t = _crd()
    before_s, before_t = crd.memory_s.clone(), crd.memory_t.clone()
    index = torch.tensor([3, 7, 11, 40])
    terms = _check_gradient_flow(crd, _batch(s, t, index=index))
    assert math.isfinite(terms["crd"].item()) and terms["crd"].item() > 0
    others = torch.ones(50, dtype=torch.bool)
    others[index] = False
    for bank, before in ((crd.memory_s, before_s), (crd.memory_t, before_t)):
        assert torch.equal(bank[others], before[others])
        assert not torch.allclose(bank[index], before[index])
        torch.testing.assert_close(bank.norm(dim=1), torch.ones(50))
    assert crd.z_s.item() > 0 and crd.z_t.item() > 0


def test_crd_is_repeatable_under_a_seed_and_needs_indices():
    losses = []
    for _ in range(2):
        crd, s, t = _crd(seed=3)
        losses.append(crd(_batch(s, t, index=torch.arange(B)))["crd"].item())
    assert losses[0] == losses[1]
    with pytest.raises(ValueError, match="index"):
        crd(_batch(s, t))


# --- every layout, gradients, bf16 ------------------------------------------------------------------------


FEATURE_METHODS = {
    "fitnet": lambda: FitNet(),
    "at": lambda: AttentionTransfer(),
    "sp": lambda: SimilarityPreserving(),
    "rkd": lambda: RKD(),
    "pkt": lambda: PKT(),
    "crd": lambda: CRD(feat_dim=8, nce_k=8),
}


# attention transfer needs maps: its refusal of vectors and tokens is tested above
FEATURE_CASES = [(n, lay) for n in FEATURE_METHODS for lay in LAYOUTS if n != "at" or lay in MAP_LAYOUTS]


@pytest.mark.parametrize("name, layout", FEATURE_CASES)
def test_feature_methods_on_every_layout(name, layout):
    s_shapes, t_shapes = LAYOUTS[layout]
    s_feats, t_feats = _feats(s_shapes, seed=0), _feats(t_shapes, seed=10)
    method = _built(FEATURE_METHODS[name](), s_feats, t_feats)
    index = torch.arange(B) if method.needs_index else None
    _check_gradient_flow(method, _batch(s_feats, t_feats, index=index))


@pytest.mark.parametrize("name", ["dkd", "dist"])
def test_logit_methods_send_gradients_to_the_student_only(name):
    method = {"dkd": DKD(warmup_epochs=0), "dist": DIST()}[name]
    s, t = _randn(B, K, seed=0, grad=True), _randn(B, K, seed=1, grad=True)
    sum(method(_batch(s=s, t=t)).values()).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and t.grad is None


@pytest.mark.parametrize("name", list(FEATURE_METHODS))
def test_bf16_features_give_float32_losses(name):
    s_shapes, t_shapes = LAYOUTS["maps"]
    s_feats = [f.to(torch.bfloat16) for f in _feats(s_shapes, seed=0, grad=False)]
    t_feats = [f.to(torch.bfloat16) for f in _feats(t_shapes, seed=10, grad=False)]
    method = _built(FEATURE_METHODS[name](), s_feats, t_feats)
    terms = method(_batch(s_feats, t_feats, index=torch.arange(B)))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
