"""BatchNorm1d, BatchNorm2d and LayerNorm (and F.batch_norm, F.layer_norm) against torch.nn in
float64 on every device: outputs, gradients of input, weight and bias, running statistics and
num_batches_tracked after several training steps (momentum and the cumulative average), eval
outputs and gradients, track_running_stats=False, state_dict keys and loading torch's state, a
few SGD steps of a small model, reprs, and torch's errors for bad input."""
import pytest

import tilegrad as tg
import tilegrad.nn.functional as F
from helpers import torch
from tilegrad.testing import assert_close, rng

pytestmark = pytest.mark.skipif(torch is None, reason="needs PyTorch")
TOL = dict(rtol=1e-10, atol=1e-10)


def _pair(x, device):
    """(ours, torch's) leaf tensors of the same float64 values, both requiring grad."""
    return (tg.tensor(x, device=device, requires_grad=True),
            torch.tensor(x, requires_grad=True))


def _same_params(ours, theirs, what, grads=True):
    for (name, p), (tname, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert name == tname
        assert_close(p, q.detach(), what=f"{what}: {name}", **TOL)
        if grads:
            assert_close(p.grad, q.grad, what=f"{what}: {name}.grad", **TOL)


def _same_buffers(ours, theirs, what):
    for (name, b), (tname, t) in zip(ours.named_buffers(), theirs.named_buffers()):
        assert name == tname
        assert_close(b, t, what=f"{what}: {name}", **TOL)


def _randomise(theirs, seed):
    """Weights and bias away from 1 and 0, so that their gradients and effects show."""
    with torch.no_grad():
        for k, p in enumerate(theirs.parameters()):
            p.copy_(torch.tensor(rng(seed + k).uniform(0.5, 1.5, p.shape)))


def _steps(ours, theirs, shape, device, steps=3, seed=0):
    """Forward and backward ``steps`` times in the current mode; everything compared each step."""
    for step in range(steps):
        x = rng(seed + step).standard_normal(shape) * (1 + step) + step   # shifting statistics
        g = rng(seed + 10 + step).standard_normal(shape)
        for m in (ours, theirs):
            m.zero_grad()
        xo, xt = _pair(x, device)
        yo, yt = ours(xo), theirs(xt)
        assert_close(yo, yt.detach(), what=f"output, step {step}", **TOL)
        yo.backward(tg.tensor(g, device=device))
        yt.backward(torch.tensor(g))
        assert_close(xo.grad, xt.grad, what=f"input grad, step {step}", **TOL)
        _same_params(ours, theirs, f"step {step}")
        _same_buffers(ours, theirs, f"step {step}")


BATCH_NORMS = [("BatchNorm1d", (5, 3)), ("BatchNorm1d", (3, 3, 7)), ("BatchNorm2d", (2, 3, 3, 5))]


@pytest.mark.parametrize("layer,shape", BATCH_NORMS, ids=str)
@pytest.mark.parametrize("momentum", [0.1, None, 0.7])
def test_batch_norm_train_then_eval_matches_torch(device, layer, shape, momentum):
    ours = getattr(tg.nn, layer)(3, momentum=momentum, dtype=tg.float64, device=device)
    theirs = getattr(torch.nn, layer)(3, momentum=momentum, dtype=torch.float64)
    _randomise(theirs, 1)
    ours.load_state_dict(theirs.state_dict())
    _steps(ours, theirs, shape, device)
    assert int(ours.num_batches_tracked.item()) == 3
    ours.eval(), theirs.eval()
    _steps(ours, theirs, shape, device, steps=1, seed=20)     # running stats, unchanged
    assert int(ours.num_batches_tracked.item()) == 3


@pytest.mark.parametrize("affine,track", [(False, True), (True, False), (False, False)])
def test_batch_norm_options_match_torch(device, affine, track):
    kw = dict(affine=affine, track_running_stats=track)
    ours = tg.nn.BatchNorm2d(3, dtype=tg.float64, device=device, **kw)
    theirs = torch.nn.BatchNorm2d(3, dtype=torch.float64, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _steps(ours, theirs, (3, 3, 2, 3), device, steps=2)
    ours.eval(), theirs.eval()      # without running stats: batch statistics still
    _steps(ours, theirs, (3, 3, 2, 3), device, steps=1, seed=5)


def test_batch_norm_without_bias_parameter(device):
    ours = tg.nn.BatchNorm1d(3, bias=False, dtype=tg.float64, device=device)
    theirs = torch.nn.BatchNorm1d(3, bias=False, dtype=torch.float64)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    _steps(ours, theirs, (7, 3), device, steps=2)


@pytest.mark.parametrize("shape,normalized", [((3, 7), 7), ((2, 3, 5), (3, 5)), ((1, 13), (13,)),
                                              ((2, 1, 3, 2), (2,))], ids=str)
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, False)])
def test_layer_norm_matches_torch(device, shape, normalized, affine, bias):
    ours = tg.nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias, dtype=tg.float64,
                           device=device)
    theirs = torch.nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias,
                                dtype=torch.float64)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _randomise(theirs, 3)
    ours.load_state_dict(theirs.state_dict())
    _steps(ours, theirs, shape, device, steps=2)


def test_functional_forms_match_torch(device):
    x = rng(1).standard_normal((4, 3, 5)) + 2
    w, b = rng(2).uniform(0.5, 1.5, 3), rng(3).standard_normal(3)
    rm, rv = rng(4).standard_normal(3), rng(5).uniform(0.5, 2, 3)
    ours_rm, ours_rv = (tg.tensor(a, device=device) for a in (rm, rv))
    theirs_rm, theirs_rv = torch.tensor(rm), torch.tensor(rv)
    for training in (True, False):
        (xo, xt), (wo, wt), (bo, bt) = _pair(x, device), _pair(w, device), _pair(b, device)
        yo = F.batch_norm(xo, ours_rm, ours_rv, wo, bo, training, 0.2, 1e-3)
        yt = torch.nn.functional.batch_norm(xt, theirs_rm, theirs_rv, wt, bt, training, 0.2,
                                            1e-3)
        assert_close(yo, yt.detach(), **TOL)
        (yo * yo).sum().backward()
        (yt * yt).sum().backward()
        for a, t, name in ((xo, xt, "input"), (wo, wt, "weight"), (bo, bt, "bias")):
            assert_close(a.grad, t.grad, what=f"{name}.grad, training={training}", **TOL)
        assert_close(ours_rm, theirs_rm, **TOL)
        assert_close(ours_rv, theirs_rv, **TOL)
    xo, xt = _pair(x, device)
    wo, wt = _pair(rng(6).uniform(0.5, 1.5, (3, 5)), device)
    yo, yt = F.layer_norm(xo, (3, 5), wo, eps=1e-3), torch.nn.functional.layer_norm(
        xt, (3, 5), wt, eps=1e-3)
    assert_close(yo, yt.detach(), **TOL)
    (yo * yo).sum().backward()
    (yt * yt).sum().backward()
    assert_close(xo.grad, xt.grad, **TOL)
    assert_close(wo.grad, wt.grad, **TOL)


def test_torch_state_dict_loads_and_gives_the_same_outputs(device):
    theirs = torch.nn.BatchNorm2d(3, dtype=torch.float64)
    x = torch.tensor(rng(8).standard_normal((4, 3, 2, 3)) * 3 + 1)
    for _ in range(3):             # running stats away from 0 and 1
        theirs(x + 1)
    _randomise(theirs, 4)
    ours = tg.nn.BatchNorm2d(3, dtype=tg.float64, device=device)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    ours.load_state_dict(theirs.state_dict())
    assert ours.num_batches_tracked.dtype == tg.int64
    assert int(ours.num_batches_tracked.item()) == 3
    ours.eval(), theirs.eval()
    assert_close(ours(tg.tensor(x.numpy(), device=device)), theirs(x).detach(), **TOL)
    ours.train(), theirs.train()
    assert_close(ours(tg.tensor(x.numpy(), device=device)), theirs(x).detach(), **TOL)
    _same_buffers(ours, theirs, "after a training step")


def _model(lib):
    return lib.nn.Sequential(lib.nn.Linear(4, 5, dtype=lib.float64), lib.nn.BatchNorm1d(
        5, dtype=lib.float64), lib.nn.ReLU(), lib.nn.Linear(5, 3, dtype=lib.float64),
        lib.nn.LayerNorm(3, dtype=lib.float64))


def test_sgd_training_steps_match_torch(device):
    torch.manual_seed(0)
    theirs = _model(torch)
    ours = _model(tg)
    ours.load_state_dict(theirs.state_dict())
    ours.to(device)
    opt_o = tg.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    opt_t = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    for step in range(3):
        x = rng(step).standard_normal((7, 4))
        target = rng(step + 50).standard_normal((7, 3))
        lo = ((ours(tg.tensor(x, device=device)) - tg.tensor(target, device=device)) ** 2).mean()
        lt = ((theirs(torch.tensor(x)) - torch.tensor(target)) ** 2).mean()
        assert_close(lo, lt.detach(), what=f"loss, step {step}", **TOL)
        for opt, loss in ((opt_o, lo), (opt_t, lt)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (k, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert_close(a, b, what=k, **TOL)


def test_reprs_match_torch():
    for args in [dict(), dict(momentum=None, affine=False, track_running_stats=False),
                 dict(eps=1e-3, momentum=0.3)]:
        assert repr(tg.nn.BatchNorm1d(4, **args)) == repr(torch.nn.BatchNorm1d(4, **args))
        assert repr(tg.nn.BatchNorm2d(4, **args)) == repr(torch.nn.BatchNorm2d(4, **args))
    assert repr(tg.nn.LayerNorm([3, 4], elementwise_affine=False)) == repr(
        torch.nn.LayerNorm([3, 4], elementwise_affine=False))


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected 2D or 3D input \(got 4D"):
        tg.nn.BatchNorm1d(3)(tg.ones(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 4D input \(got 3D"):
        tg.nn.BatchNorm2d(3)(tg.ones(2, 3, 4))
    with pytest.raises(RuntimeError, match=r"running_mean should contain 3 elements not 4 .*"
                                           r"\(2, 3\)"):
        tg.nn.BatchNorm1d(4)(tg.ones(2, 3))
    with pytest.raises(ValueError, match=r"more than 1 value per channel .* \(1, 3\)"):
        tg.nn.BatchNorm1d(3)(tg.ones(1, 3))
    m = tg.nn.BatchNorm1d(3)
    before = m.running_mean.numpy().copy()
    with pytest.raises(ValueError):
        m(tg.ones(1, 3))
    assert_close(m.running_mean, before, rtol=0, atol=0)
    assert m.eval()(tg.ones(1, 3)).shape == (1, 3)          # eval: running stats, any batch
    with pytest.raises(RuntimeError, match="running_mean and running_var must be defined"):
        F.batch_norm(tg.ones(2, 3), None, None, training=False)
    with pytest.raises(RuntimeError, match=r"weight should contain 3 elements not 4"):
        F.batch_norm(tg.ones(2, 3), None, None, tg.ones(4), training=True)
    with pytest.raises(TypeError, match="momentum must be a float"):
        F.batch_norm(tg.ones(2, 3), None, None, training=True, momentum=None)
    with pytest.raises(RuntimeError, match=r"normalized_shape=\[4\], expected input with shape "
                                           r"\[\*, 4\], but got input of shape \(2, 3\)"):
        tg.nn.LayerNorm(4)(tg.ones(2, 3))
    with pytest.raises(RuntimeError, match=r"weight to be of the same shape .* \(4,\)"):
        F.layer_norm(tg.ones(2, 3), (3,), weight=tg.ones(4))
    with pytest.raises(TypeError, match="normalized_shape must be an int"):
        tg.nn.LayerNorm("4")
    with pytest.raises(RuntimeError, match="expects a floating-point input, got int64"):
        F.layer_norm(tg.ones(2, 3, dtype=tg.int64), (3,))
