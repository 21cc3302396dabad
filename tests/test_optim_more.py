"""Adam's amsgrad and maximize, AdamW, RMSprop, Adadelta, Adagrad, SGD's maximize, and gradient
clipping (any p-norm, by value, parameters_to_vector), against torch in float64.

As in test_optim.py, both frameworks get the same parameters and the same fresh random gradients
every step (no autograd involved), so any difference is the optimizer's. "cuda" (the simulator)
runs one case per optimizer with its options on, on two small parameters.
"""
import math

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.nn.utils import (clip_grad_norm_, clip_grad_value_, parameters_to_vector,
                               vector_to_parameters)
from tilegrad.testing import assert_close, rng

RTOL = 1e-9
SHAPES = [(3, 5), (7,), (2, 3, 1)]
CUDA_SHAPES = [(3, 5), (7,)]

pytestmark = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

CASES = {
    "adam-amsgrad": ("Adam", dict(lr=0.02, amsgrad=True, weight_decay=0.1)),
    "adam-maximize": ("Adam", dict(lr=0.01, maximize=True, weight_decay=0.05)),
    "adamw": ("AdamW", dict()),
    "adamw-custom": ("AdamW", dict(lr=0.02, betas=(0.8, 0.95), weight_decay=0.3)),
    "adamw-amsgrad": ("AdamW", dict(lr=0.02, amsgrad=True, maximize=True)),
    "rmsprop": ("RMSprop", dict()),
    "rmsprop-centered": ("RMSprop", dict(lr=0.01, centered=True, alpha=0.9)),
    "rmsprop-momentum": ("RMSprop", dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    "rmsprop-all": ("RMSprop", dict(lr=0.005, momentum=0.5, centered=True, weight_decay=0.1,
                                    maximize=True)),
    "adadelta": ("Adadelta", dict()),
    "adadelta-wd": ("Adadelta", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1,
                                     maximize=True)),
    "adagrad": ("Adagrad", dict()),
    "adagrad-all": ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1,
                                    initial_accumulator_value=0.3, eps=1e-8)),
    "sgd-maximize": ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01, maximize=True)),
}
ON_CUDA = ["adam-amsgrad", "adamw-amsgrad", "adamw-custom", "rmsprop-all", "adadelta-wd",
           "adagrad-all", "sgd-maximize"]
STATE = {"Adam": ["exp_avg", "exp_avg_sq"], "AdamW": ["exp_avg", "exp_avg_sq"],
         "RMSprop": ["square_avg"], "Adadelta": ["square_avg", "acc_delta"],
         "Adagrad": ["sum"], "SGD": ["momentum_buffer"]}


def _params(seed, device="cpu", shapes=SHAPES):
    r = rng(seed)
    arrays = [r.standard_normal(s) + 0.5 for s in shapes]
    return ([tg.tensor(a, requires_grad=True, device=device) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def _run_both(ours, theirs, tg_p, th_p, steps, seed):
    r = rng(seed)
    for _ in range(steps):
        for a, b in zip(tg_p, th_p):
            g = r.standard_normal(a.shape)
            a.grad, b.grad = tg.tensor(g, device=a.device), torch.tensor(g)
        ours.step()
        theirs.step()


def _compare(ours, theirs, tg_p, th_p, names):
    for k, (a, b) in enumerate(zip(tg_p, th_p)):
        assert_close(a.numpy(), b.detach().numpy(), rtol=RTOL, what=f"parameter {k}")
        assert set(ours.state[a]) == set(theirs.state[b])
        for name in names + [n for n in ("max_exp_avg_sq", "grad_avg") if n in ours.state[a]]:
            assert_close(ours.state[a][name].numpy(), theirs.state[b][name].numpy(), rtol=RTOL,
                         what=f"{name} of parameter {k}")
        if "step" in ours.state[a]:
            assert float(ours.state[a]["step"]) == float(theirs.state[b]["step"])


def _device_cases():
    for case in CASES:
        yield pytest.param(case, "cpu", id=f"{case}-cpu")
        if case in ON_CUDA:
            yield pytest.param(case, "cuda", id=f"{case}-cuda", marks=pytest.mark.skipif(
                not tg.device("cuda").available, reason="device cuda unavailable"))


@pytest.mark.parametrize("case, device", list(_device_cases()))
def test_optimizer_matches_torch(case, device):
    name, kw = CASES[case]
    tg_p, th_p = _params(1, device, SHAPES if device == "cpu" else CUDA_SHAPES)
    ours, theirs = getattr(tg.optim, name)(tg_p, **kw), getattr(torch.optim, name)(th_p, **kw)
    _run_both(ours, theirs, tg_p, th_p, steps=5 if device == "cpu" else 3, seed=2)
    _compare(ours, theirs, tg_p, th_p, STATE[name] if kw.get("momentum", 1) else [])


@pytest.mark.parametrize("name", ["AdamW", "RMSprop", "Adadelta", "Adagrad"])
def test_defaults_are_torch_s(name):
    tg_p, th_p = _params(3)
    ours = getattr(tg.optim, name)(tg_p).param_groups[0]
    theirs = getattr(torch.optim, name)(th_p).param_groups[0]
    for key, value in ours.items():
        if key != "params":
            assert theirs[key] == value, key


@pytest.mark.parametrize("name, kw", [("AdamW", dict(amsgrad=True)), ("RMSprop", {}),
                                      ("Adadelta", {}), ("Adagrad", {})])
def test_param_groups_with_their_own_lr(name, kw):
    tg_p, th_p = _params(4)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.3}]  # noqa: E731
    ours = getattr(tg.optim, name)(groups(tg_p), lr=0.01, **kw)
    theirs = getattr(torch.optim, name)(groups(th_p), lr=0.01, **kw)
    _run_both(ours, theirs, tg_p, th_p, steps=4, seed=5)
    _compare(ours, theirs, tg_p, th_p, [])


# ---------------------------------------------------------------- state dicts
SAVED = ["adam-amsgrad", "adamw-amsgrad", "rmsprop-all", "adadelta-wd", "adagrad-all"]


@pytest.mark.parametrize("case", SAVED)
def test_torch_state_dict_loads_and_continues_like_torch(case):
    """torch's state dict (tensors turned into NumPy arrays) loads into ours: same layout,
    then both go on alike."""
    name, kw = CASES[case]
    tg_p, th_p = _params(6)
    theirs = getattr(torch.optim, name)(th_p, **kw)
    _run_both(getattr(tg.optim, name)(_params(6)[0], **kw), theirs, _params(6)[0], th_p, 3, 7)
    with tg.no_grad():
        for a, b in zip(tg_p, th_p):
            a.copy_(tg.tensor(b.detach().numpy()))
    ref = theirs.state_dict()
    sd = {"state": {k: {n: v.numpy() for n, v in s.items()} for k, s in ref["state"].items()},
          "param_groups": [dict(g) for g in ref["param_groups"]]}
    ours = getattr(tg.optim, name)(tg_p, lr=0.9)
    ours.load_state_dict(sd)
    assert ours.param_groups[0]["lr"] == ref["param_groups"][0]["lr"]
    mine = ours.state_dict()
    assert {k: set(s) for k, s in mine["state"].items()} == \
        {k: set(s) for k, s in ref["state"].items()}
    _run_both(ours, theirs, tg_p, th_p, steps=3, seed=8)
    _compare(ours, theirs, tg_p, th_p, STATE[name])


@pytest.mark.parametrize("case", SAVED)
def test_own_state_dict_resumes_bit_for_bit(case):
    name, kw = CASES[case]
    pa, _ = _params(9)
    a = getattr(tg.optim, name)(pa, **kw)
    r = rng(10)
    for _ in range(2):
        for p in pa:
            p.grad = tg.tensor(r.standard_normal(p.shape))
        a.step()
    saved = a.state_dict()
    pb = [tg.tensor(p.numpy(), requires_grad=True) for p in pa]
    b = getattr(tg.optim, name)(pb, lr=0.5)
    b.load_state_dict(saved)
    for _ in range(3):
        gs = [r.standard_normal(p.shape) for p in pa]
        for p, q, g in zip(pa, pb, gs):
            p.grad, q.grad = tg.tensor(g), tg.tensor(g)
        a.step()
        b.step()
    for p, q in zip(pa, pb):
        np.testing.assert_array_equal(q.numpy(), p.numpy())


def test_adamw_refuses_coupled_decay_and_adam_loads_torch_adamw_groups_as_decoupled():
    tg_p, th_p = _params(11)
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        tg.optim.AdamW([{"params": tg_p, "decoupled_weight_decay": False}])
    ref = torch.optim.AdamW(th_p, weight_decay=0.2).state_dict()
    ours = tg.optim.Adam(tg_p)
    ours.load_state_dict({"state": {}, "param_groups": [dict(g) for g in ref["param_groups"]]})
    assert ours.param_groups[0]["decoupled_weight_decay"] is True
    assert ours.param_groups[0]["weight_decay"] == 0.2


@pytest.mark.parametrize("name, kwargs, error", [
    ("AdamW", dict(lr=-1.0), ValueError),
    ("AdamW", dict(betas=(0.9, 1.5)), ValueError),
    ("AdamW", dict(amsgrad="yes"), TypeError),
    ("RMSprop", dict(alpha=-0.1), ValueError),
    ("RMSprop", dict(momentum=-0.5), ValueError),
    ("RMSprop", dict(eps=-1.0), ValueError),
    ("Adadelta", dict(rho=1.5), ValueError),
    ("Adadelta", dict(lr=-1.0), ValueError),
    ("Adagrad", dict(lr_decay=-1.0), ValueError),
    ("Adagrad", dict(initial_accumulator_value=-1.0), ValueError),
])
def test_bad_hyperparameters_raise_as_torch(name, kwargs, error):
    tg_p, th_p = _params(12)
    with pytest.raises(error):
        getattr(tg.optim, name)(tg_p, **kwargs)
    if error is ValueError:
        with pytest.raises(error):
            getattr(torch.optim, name)(th_p, **kwargs)


def test_adagrad_makes_its_state_at_construction_as_torch():
    tg_p, th_p = _params(13)
    ours = tg.optim.Adagrad(tg_p, initial_accumulator_value=0.25).state_dict()
    theirs = torch.optim.Adagrad(th_p, initial_accumulator_value=0.25).state_dict()
    assert sorted(ours["state"]) == sorted(theirs["state"]) == [0, 1, 2]
    for k in ours["state"]:
        assert_close(ours["state"][k]["sum"], theirs["state"][k]["sum"].numpy(), what="sum")
        assert float(ours["state"][k]["step"]) == 0


# ---------------------------------------------------------------- clipping
def _grads(seed, device="cpu", shapes=((3, 5), (7,), (1,), (2, 3, 4)), scale=3.0):
    r = rng(seed)
    tg_p, th_p = [], []
    for s in shapes:
        a, g = r.standard_normal(s), r.standard_normal(s) * scale
        tg_p.append(tg.tensor(a, requires_grad=True, device=device))
        tg_p[-1].grad = tg.tensor(g, device=device)
        th_p.append(torch.tensor(a, requires_grad=True))
        th_p[-1].grad = torch.tensor(g)
    return tg_p, th_p


@pytest.mark.parametrize("norm_type", [1.0, 3.0, 0.5, math.inf, 2.0])
@pytest.mark.parametrize("max_norm", [0.7, 1e4])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, device):
    tg_p, th_p = _grads(14, device)
    total = clip_grad_norm_(tg_p, max_norm, norm_type=norm_type)
    want = torch.nn.utils.clip_grad_norm_(th_p, max_norm, norm_type=norm_type)
    assert isinstance(total, tg.Tensor) and total.shape == ()
    assert_close(float(total), float(want), rtol=1e-12, what="total norm")
    for k, (a, b) in enumerate(zip(tg_p, th_p)):
        assert_close(a.grad.numpy(), b.grad.numpy(), rtol=1e-12, what=f"gradient {k}")


def test_clip_grad_norm_refuses_a_bad_norm_type_and_raises_on_nonfinite_for_any_p():
    tg_p, _ = _grads(15)
    before = tg_p[0].grad.numpy()
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="norm_type"):
            clip_grad_norm_(tg_p, 1.0, norm_type=bad)
    np.testing.assert_array_equal(tg_p[0].grad.numpy(), before)
    tg_p[1].grad = tg.tensor(np.full(7, np.inf))
    with pytest.raises(RuntimeError, match="order inf"):
        clip_grad_norm_(tg_p, 1.0, norm_type=math.inf, error_if_nonfinite=True)


def test_clip_grad_value_matches_torch(device):
    tg_p, th_p = _grads(16, device)
    tg_p[0].grad.copy_(tg.tensor(np.where(np.arange(15).reshape(3, 5) == 4, np.nan,
                                          tg_p[0].grad.numpy()), device=device))
    th_p[0].grad = torch.tensor(tg_p[0].grad.numpy())
    tg_p.append(tg.tensor([1.0], requires_grad=True, device=device))      # no gradient
    version = tg_p[1].grad._version
    assert clip_grad_value_(tg_p, 1.3) is None
    torch.nn.utils.clip_grad_value_(th_p, 1.3)
    for k, (a, b) in enumerate(zip(tg_p, th_p)):
        np.testing.assert_array_equal(a.grad.numpy(), b.grad.numpy(), err_msg=f"gradient {k}")
    assert tg_p[1].grad._version == version + 1


def test_parameters_to_vector_and_back_as_torch():
    tg_p, th_p = _grads(17)
    vec = parameters_to_vector(tg_p)
    np.testing.assert_array_equal(vec.numpy(),
                                  torch.nn.utils.parameters_to_vector(th_p).detach().numpy())
    new = rng(18).standard_normal(vec.shape[0])
    vector_to_parameters(tg.tensor(new), tg_p)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), th_p)
    for a, b in zip(tg_p, th_p):
        np.testing.assert_array_equal(a.numpy(), b.detach().numpy())
    with pytest.raises(ValueError, match="elements"):
        vector_to_parameters(tg.tensor(new[:-1]), tg_p)


@pytest.mark.skipif(not tg.device("cuda").available, reason="device cuda unavailable")
def test_amsgrad_refuses_capture_and_changes_nothing():
    from tilegrad.errors import CaptureError
    tg_p, _ = _params(19, "cuda", [(3,)])
    opt = tg.optim.AdamW(tg_p, amsgrad=True)
    tg_p[0].grad = tg.tensor(rng(20).standard_normal(3), device="cuda")
    opt.step()                                       # the state exists: only the step is host work
    before = tg_p[0].numpy(), float(opt.state[tg_p[0]]["step"])
    with pytest.raises(CaptureError, match="amsgrad"):
        with tg.cuda.graph(tg.cuda.CUDAGraph()):
            opt.step()
    np.testing.assert_array_equal(tg_p[0].numpy(), before[0])
    assert float(opt.state[tg_p[0]]["step"]) == before[1]
