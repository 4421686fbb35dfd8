"""The training loop stops on a NaN loss before it touches the weights, and resumes mid-epoch."""

import pytest
import torch
from torch import nn

from distill.engine.batches import BatchLoader
from distill.engine.loop import Running, train_one_epoch
from distill.errors import UserError


def _setup():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8)
    y = torch.randint(0, 3, (40,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    return model, BatchLoader(x, y, 8, seed=1), torch.optim.SGD(model.parameters(), lr=0.1)


def test_nan_loss_names_the_step_and_leaves_the_weights_as_they_were():
    model, loader, opt = _setup()
    calls = {"n": 0}
    snapshot = {}

    def loss_fn(s, t, y, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            snapshot.update({k: v.clone() for k, v in model.state_dict().items()})
            return s.sum() * float("nan"), {}
        return nn.functional.cross_entropy(s, y), {}

    with pytest.raises(UserError, match=r"loss became nan at epoch 2, step 3"):
        train_one_epoch(model, loss_fn, loader, opt, epoch=1)
    assert all(torch.equal(snapshot[k], v) for k, v in model.state_dict().items())


def test_an_epoch_resumed_mid_way_matches_one_run_straight():
    def ce(s, t, y, **kw):
        return nn.functional.cross_entropy(s, y), {}

    model, loader, opt = _setup()
    straight = train_one_epoch(model, ce, loader, opt)
    end = {k: v.clone() for k, v in model.state_dict().items()}

    model, loader, opt = _setup()
    saved = {}

    def stop_after_two(step, running):
        if step == 1:
            saved.update(model=model.state_dict(), opt=opt.state_dict(), running=running.as_dict())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_one_epoch(model, ce, loader, opt, on_step=stop_after_two)
    model2, loader2, opt2 = _setup()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    resumed = train_one_epoch(model2, ce, loader2, opt2, start_step=2, running=Running(**saved["running"]))
    assert resumed.images == straight.images == 40
    assert resumed.loss == pytest.approx(straight.loss, abs=0) and resumed.acc == straight.acc
    assert all(torch.equal(end[k], v) for k, v in model2.state_dict().items())


def test_grad_clip_bounds_every_step():
    """A huge loss moves plain SGD by lr * |grad|; with grad_clip each step moves the weights by at
    most lr * grad_clip (the total norm over all parameters)."""

    def huge(s, t, y, **kw):
        return 1e4 * nn.functional.cross_entropy(s, y), {}

    def step_sizes(grad_clip):
        model, loader, opt = _setup()
        sizes = []
        before = [torch.cat([p.detach().flatten() for p in model.parameters()])]

        def measure(step, running):
            now = torch.cat([p.detach().flatten() for p in model.parameters()])
            sizes.append(float((now - before[0]).norm()))
            before[0] = now

        train_one_epoch(model, huge, loader, opt, on_step=measure, grad_clip=grad_clip)
        return sizes

    assert max(step_sizes(None)) > 100
    clipped = step_sizes(2.0)
    assert len(clipped) == 5 and max(clipped) <= 0.1 * 2.0 + 1e-6 and min(clipped) > 0.1
