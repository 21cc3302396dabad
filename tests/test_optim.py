"""tilegrad.optim against torch.optim in float64: SGD and Adam updates and their buffers, parameter
groups, state dicts, StepLR, and argument checks.

Each parity test builds the same parameters in both frameworks and feeds both optimizers the same
fresh random gradients every step (no autograd involved), so any difference is the optimizer's.
"""
import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import assert_close, rng

RTOL = 1e-8
SHAPES = [(3, 5), (7,), (2, 3, 4)]   # odd shapes, more than one parameter
STEPS = 5


def _need_torch():
    if torch is None:
        pytest.skip("PyTorch is not installed")


def _params(seed=0, shapes=SHAPES, device="cpu"):
    """Equal float64 parameters in tilegrad (on ``device``) and torch (never zero)."""
    r = rng(seed)
    arrays = [r.standard_normal(s) + 0.5 for s in shapes]
    tg_p = [tg.tensor(a, requires_grad=True, device=device) for a in arrays]
    th_p = [torch.tensor(a, requires_grad=True) for a in arrays] if torch is not None else None
    return tg_p, th_p


def _set_grads(tg_p, th_p, r, skip=()):
    """The same fresh random gradient on both sides; indices in ``skip`` get no gradient."""
    for k, (a, b) in enumerate(zip(tg_p, th_p)):
        if k in skip:
            a.grad, b.grad = None, None
            continue
        g = r.standard_normal(a.shape)
        a.grad = tg.tensor(g, device=a.device)
        b.grad = torch.tensor(g)


def _run_both(tg_opt, th_opt, tg_p, th_p, steps=STEPS, seed=1, skip=()):
    r = rng(seed)
    for _ in range(steps):
        _set_grads(tg_p, th_p, r, skip)
        tg_opt.step()
        th_opt.step()


def _compare_params(tg_p, th_p, rtol=RTOL):
    for k, (a, b) in enumerate(zip(tg_p, th_p)):
        assert a.dtype == tg.float64
        assert_close(a.numpy(), b.detach().numpy(), rtol=rtol, what=f"parameter {k}")


def _compare_state(tg_opt, th_opt, tg_p, th_p, names, rtol=RTOL):
    for k, (a, b) in enumerate(zip(tg_p, th_p)):
        for name in names:
            assert_close(tg_opt.state[a][name].numpy(), th_opt.state[b][name].numpy(),
                         rtol=rtol, what=f"{name} of parameter {k}")


# ---------------------------------------------------------------- SGD
SGD_CASES = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.8, dampening=0.3),
    "nesterov": dict(lr=0.03, momentum=0.9, nesterov=True),
    "weight_decay": dict(lr=0.07, weight_decay=0.01),
    "all": dict(lr=0.02, momentum=0.7, weight_decay=0.05, nesterov=True),
}


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sgd_matches_torch(case, device):
    _need_torch()
    kw = SGD_CASES[case]
    tg_p, th_p = _params(device=device)
    tg_opt, th_opt = tg.optim.SGD(tg_p, **kw), torch.optim.SGD(th_p, **kw)
    _run_both(tg_opt, th_opt, tg_p, th_p)
    _compare_params(tg_p, th_p)
    if kw.get("momentum"):
        _compare_state(tg_opt, th_opt, tg_p, th_p, ["momentum_buffer"])
    else:
        assert all("momentum_buffer" not in tg_opt.state.get(p, {}) for p in tg_p)


# ---------------------------------------------------------------- Adam
ADAM_CASES = {
    "default": dict(),
    "custom": dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6),
    "weight_decay": dict(lr=3e-3, weight_decay=0.1),
}


@pytest.mark.parametrize("case", list(ADAM_CASES))
def test_adam_matches_torch(case, device):
    _need_torch()
    kw = ADAM_CASES[case]
    tg_p, th_p = _params(device=device)
    tg_opt, th_opt = tg.optim.Adam(tg_p, **kw), torch.optim.Adam(th_p, **kw)
    _run_both(tg_opt, th_opt, tg_p, th_p, steps=7)
    _compare_params(tg_p, th_p)
    _compare_state(tg_opt, th_opt, tg_p, th_p, ["exp_avg", "exp_avg_sq"])
    for a, b in zip(tg_p, th_p):
        assert tg_opt.state[a]["step"] == int(th_opt.state[b]["step"]) == 7


# ---------------------------------------------------------------- groups, missing gradients
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_param_groups_with_their_own_lr(opt, device):
    _need_torch()
    tg_p, th_p = _params(device=device)
    kw = dict(momentum=0.9) if opt == "SGD" else dict(betas=(0.85, 0.99))
    tg_opt = getattr(tg.optim, opt)([{"params": tg_p[:2]}, {"params": tg_p[2:], "lr": 0.3}],
                                    lr=0.01, **kw)
    th_opt = getattr(torch.optim, opt)([{"params": th_p[:2]}, {"params": th_p[2:], "lr": 0.3}],
                                       lr=0.01, **kw)
    assert [g["lr"] for g in tg_opt.param_groups] == [0.01, 0.3]
    _run_both(tg_opt, th_opt, tg_p, th_p)
    _compare_params(tg_p, th_p)


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_parameters_without_grad_are_skipped(opt, device):
    _need_torch()
    tg_p, th_p = _params(device=device)
    before = tg_p[1].numpy()
    kw = dict(lr=0.1, momentum=0.9) if opt == "SGD" else dict(lr=0.01)
    tg_opt, th_opt = getattr(tg.optim, opt)(tg_p, **kw), getattr(torch.optim, opt)(th_p, **kw)
    _run_both(tg_opt, th_opt, tg_p, th_p, skip={1})
    np.testing.assert_array_equal(tg_p[1].numpy(), before)
    assert tg_p[1] not in tg_opt.state and th_p[1] not in th_opt.state
    _compare_params(tg_p, th_p)


def test_zero_grad_clears_gradients():
    tg_p, _ = _params()
    opt = tg.optim.SGD(tg_p, lr=0.1)
    for p in tg_p:
        p.grad = tg.tensor(rng(3).standard_normal(p.shape))
    opt.zero_grad()
    assert all(p.grad is None for p in tg_p)
    for p in tg_p:
        p.grad = tg.tensor(rng(4).standard_normal(p.shape))
    opt.zero_grad(set_to_none=False)     # as torch: zero-filled gradients of the right shape
    for p in tg_p:
        np.testing.assert_array_equal(p.grad.numpy(), np.zeros(p.shape))


# ---------------------------------------------------------------- state dicts
def _make(opt, params, groups):
    if opt == "SGD":
        return tg.optim.SGD(groups(params), lr=0.05, momentum=0.9, nesterov=True)
    return tg.optim.Adam(groups(params), lr=0.01, betas=(0.8, 0.9), weight_decay=0.01)


def _two_groups(params):
    return [{"params": params[:1], "lr": 0.2}, {"params": params[1:]}]


def _step_with(opt, params, r, steps):
    for _ in range(steps):
        for p in params:
            p.grad = tg.tensor(r.standard_normal(p.shape), device=p.device)
        opt.step()


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_state_dict_resume_continues_identically(opt, device):
    pa, _ = _params(seed=4, device=device)
    a = _make(opt, pa, _two_groups)
    _step_with(a, pa, rng(5), 3)
    saved = a.state_dict()
    saved_params = [p.numpy() for p in pa]

    # The saved dict is a snapshot: further steps of ``a`` must not change it.
    r = rng(6)
    grads = [[r.standard_normal(p.shape) for p in pa] for _ in range(4)]
    for gs in grads:
        for p, g in zip(pa, gs):
            p.grad = tg.tensor(g, device=device)
        a.step()

    pb = [tg.tensor(v, requires_grad=True, device=device) for v in saved_params]
    b = _make(opt, pb, lambda ps: [{"params": ps[:1], "lr": 0.9}, {"params": ps[1:]}])
    b.load_state_dict(saved)
    assert [g["lr"] for g in b.param_groups] == [0.2, 0.05 if opt == "SGD" else 0.01]
    for gs in grads:
        for p, g in zip(pb, gs):
            p.grad = tg.tensor(g, device=device)
        b.step()
    for k, (x, y) in enumerate(zip(pa, pb)):
        np.testing.assert_array_equal(y.numpy(), x.numpy(), err_msg=f"parameter {k}")
    for x, y in zip(pa, pb):
        for name, v in a.state[x].items():
            w = b.state[y][name]
            if isinstance(v, tg.Tensor):
                np.testing.assert_array_equal(w.numpy(), v.numpy(), err_msg=name)
            else:
                assert w == v, name


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_state_dict_layout_like_torch(opt, device):
    _need_torch()
    tg_p, th_p = _params(device=device)
    kw = dict(lr=0.1, momentum=0.9) if opt == "SGD" else dict(lr=0.01)
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.5}]  # noqa: E731
    tg_opt = getattr(tg.optim, opt)(groups(tg_p), **kw)
    th_opt = getattr(torch.optim, opt)(groups(th_p), **kw)
    _run_both(tg_opt, th_opt, tg_p, th_p, steps=2, skip={1})
    sd, ref = tg_opt.state_dict(), th_opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == sorted(ref["state"]) == [0, 2]
    assert [g["params"] for g in sd["param_groups"]] == [g["params"] for g in ref["param_groups"]]
    for g, h in zip(sd["param_groups"], ref["param_groups"]):
        for key in kw:
            assert g[key] == h[key]
        assert g["lr"] == h["lr"]
    for k in sd["state"]:
        assert set(sd["state"][k]) == set(ref["state"][k])
        for name, v in sd["state"][k].items():
            if name == "step":
                assert v == int(ref["state"][k][name])
            else:
                assert isinstance(v, np.ndarray)
                assert_close(v, ref["state"][k][name].numpy(), rtol=RTOL, what=name)


def test_adam_loads_torch_state_dict_and_continues_like_torch():
    """Optimizer state moves from torch to tilegrad: torch's state dict with its tensors turned
    into NumPy arrays (its ``step`` is a 0-d float tensor) loads, and both continue alike."""
    _need_torch()
    tg_p, th_p = _params(seed=8)
    kw = dict(lr=0.02, betas=(0.7, 0.9))
    th_opt = torch.optim.Adam(th_p, **kw)
    r = rng(9)
    for _ in range(3):
        for p in th_p:
            p.grad = torch.tensor(r.standard_normal(tuple(p.shape)))
        th_opt.step()
    with tg.no_grad():
        for a, b in zip(tg_p, th_p):
            a._data[...] = b.detach().numpy()
    ref = th_opt.state_dict()
    sd = {"state": {k: {n: v.numpy() for n, v in s.items()} for k, s in ref["state"].items()},
          "param_groups": [dict(g) for g in ref["param_groups"]]}
    tg_opt = tg.optim.Adam(tg_p, lr=0.5)
    tg_opt.load_state_dict(sd)
    assert tg_opt.param_groups[0]["lr"] == 0.02
    _run_both(tg_opt, th_opt, tg_p, th_p, steps=3, seed=10)
    _compare_params(tg_p, th_p)
    _compare_state(tg_opt, th_opt, tg_p, th_p, ["exp_avg", "exp_avg_sq"])


def test_torch_state_dict_with_an_option_we_lack_is_refused():
    """differentiable=True (or capturable=True) from torch would be silently ignored: refuse it
    instead."""
    _need_torch()
    tg_p, th_p = _params(seed=11)
    ref = torch.optim.Adam(th_p, lr=0.02, differentiable=True).state_dict()
    tg_opt = tg.optim.Adam(tg_p, lr=0.5)
    with pytest.raises(ValueError, match="differentiable"):
        tg_opt.load_state_dict({"state": {},
                                "param_groups": [dict(g) for g in ref["param_groups"]]})
    assert tg_opt.param_groups[0]["lr"] == 0.5


def _snapshot(opt):
    sd = opt.state_dict()
    return sd, {id(p): {n: (v.numpy() if isinstance(v, tg.Tensor) else v) for n, v in s.items()}
                for p, s in opt.state.items()}


def _assert_unchanged(opt, before):
    sd, state = before
    now = opt.state_dict()
    assert [{k: v for k, v in g.items()} for g in now["param_groups"]] == sd["param_groups"]
    assert set(id(p) for p in opt.state) == set(state)
    for p, s in opt.state.items():
        for n, v in s.items():
            np.testing.assert_array_equal(v.numpy() if isinstance(v, tg.Tensor) else v,
                                          state[id(p)][n])


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_load_state_dict_rejects_mismatch_and_changes_nothing(opt):
    tg_p, _ = _params(seed=11)
    a = _make(opt, tg_p, lambda ps: ps)
    _step_with(a, tg_p, rng(12), 2)
    before = _snapshot(a)

    # A state dict from an optimizer over fewer parameters.
    fewer, _ = _params(seed=13, shapes=SHAPES[:2])
    other = _make(opt, fewer, lambda ps: ps)
    _step_with(other, fewer, rng(14), 1)
    bad = other.state_dict()
    bad["param_groups"][0]["lr"] = 123.0
    with pytest.raises(ValueError):
        a.load_state_dict(bad)
    _assert_unchanged(a, before)

    # The right parameters, one buffer of the wrong shape (and a changed lr that must not land).
    bad = a.state_dict()
    bad["param_groups"][0]["lr"] = 123.0
    name = "momentum_buffer" if opt == "SGD" else "exp_avg_sq"
    bad["state"][2][name] = np.ones((2, 3, 5))
    with pytest.raises(ValueError):
        a.load_state_dict(bad)
    _assert_unchanged(a, before)


# ---------------------------------------------------------------- StepLR
def _steplr_pair(step_size, gamma):
    tg_p, th_p = _params()
    tg_opt = tg.optim.SGD([{"params": tg_p[:1]}, {"params": tg_p[1:], "lr": 0.3}], lr=0.7)
    th_opt = torch.optim.SGD([{"params": th_p[:1]}, {"params": th_p[1:], "lr": 0.3}], lr=0.7)
    return (tg_opt, tg.optim.lr_scheduler.StepLR(tg_opt, step_size, gamma),
            th_opt, torch.optim.lr_scheduler.StepLR(th_opt, step_size, gamma))


@pytest.mark.parametrize("step_size,gamma", [(3, 0.1), (1, 0.5), (4, 0.9)])
def test_steplr_matches_torch(step_size, gamma):
    _need_torch()
    tg_opt, tg_s, th_opt, th_s = _steplr_pair(step_size, gamma)
    seen = set()
    for epoch in range(11):
        # torch's StepLR multiplies by gamma (chained); tilegrad's is closed form: equal to
        # rounding.
        assert_close(tg_s.get_last_lr(), th_s.get_last_lr(), rtol=1e-12,
                     what=f"lr at epoch {epoch}")
        assert_close([g["lr"] for g in tg_opt.param_groups], [g["lr"] for g in th_opt.param_groups],
                     rtol=1e-12, what=f"group lr at epoch {epoch}")
        seen.add(round(tg_s.get_last_lr()[0], 12))
        th_opt.step()   # torch warns when the scheduler steps before the optimizer
        tg_s.step()
        th_s.step()
    assert tg_s.last_epoch == th_s.last_epoch == 11
    assert len(seen) > 1


def test_steplr_state_dict_round_trip():
    _need_torch()
    tg_opt, tg_s, th_opt, th_s = _steplr_pair(3, 0.5)
    for _ in range(4):
        th_opt.step()   # no gradients: a no-op that keeps torch's order check quiet
        tg_s.step()
        th_s.step()
    opt_sd, s_sd = tg_opt.state_dict(), tg_s.state_dict()
    assert s_sd["last_epoch"] == 4

    fresh_p, _ = _params()
    opt2 = tg.optim.SGD([{"params": fresh_p[:1]}, {"params": fresh_p[1:], "lr": 0.3}], lr=0.7)
    s2 = tg.optim.lr_scheduler.StepLR(opt2, 3, 0.5)
    opt2.load_state_dict(opt_sd)
    s2.load_state_dict(s_sd)
    assert s2.get_last_lr() == tg_s.get_last_lr()
    for epoch in range(5, 12):
        tg_s.step()
        s2.step()
        th_s.step()
        assert s2.get_last_lr() == tg_s.get_last_lr(), f"epoch {epoch}"
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in tg_opt.param_groups]
        assert_close(s2.get_last_lr(), th_s.get_last_lr(), rtol=1e-12, what=f"lr at epoch {epoch}")


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("make", [
    lambda ps: tg.optim.SGD(ps, lr=-0.1),
    lambda ps: tg.optim.SGD(ps, lr=0.1, nesterov=True),
    lambda ps: tg.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
    lambda ps: tg.optim.SGD(ps, lr=0.1, momentum=-0.5),
    lambda ps: tg.optim.SGD(ps, lr=0.1, weight_decay=-1e-3),
    lambda ps: tg.optim.Adam(ps, lr=-1e-3),
    lambda ps: tg.optim.Adam(ps, betas=(1.0, 0.999)),
    lambda ps: tg.optim.Adam(ps, betas=(0.9, -0.1)),
    lambda ps: tg.optim.Adam(ps, eps=-1e-8),
    lambda ps: tg.optim.lr_scheduler.StepLR(tg.optim.SGD(ps, lr=0.1), step_size=0),
    lambda ps: tg.optim.SGD([], lr=0.1),
], ids=["sgd-neg-lr", "nesterov-no-momentum", "nesterov-dampening", "sgd-neg-momentum",
        "sgd-neg-wd", "adam-neg-lr", "adam-beta1", "adam-beta2", "adam-eps", "steplr-step0",
        "empty"])
def test_bad_arguments_raise_value_error(make):
    tg_p, _ = _params()
    with pytest.raises(ValueError):
        make(tg_p)


def test_non_leaf_or_frozen_parameters_are_rejected():
    x = tg.tensor(rng(15).standard_normal((3, 2)), requires_grad=True)
    with pytest.raises(TypeError):
        tg.optim.SGD([x * 2], lr=0.1)
    with pytest.raises(TypeError):
        tg.optim.Adam([tg.tensor(rng(16).standard_normal(4))])


# ---------------------------------------------------------------- hyperparameters as PyTorch's
NAN = float("nan")

# (constructor, the class PyTorch raises, its message): tilegrad must raise the same.
REJECTED_BY_BOTH = [
    ("Adam", dict(lr=NAN), ValueError, "Invalid learning rate: nan"),    # bug: accepted
    ("Adam", dict(eps=NAN), ValueError, "Invalid epsilon value: nan"),   # bug: accepted
    ("Adam", dict(lr=-1.0), ValueError, "Invalid learning rate: -1.0"),
    ("Adam", dict(betas=(NAN, 0.9)), ValueError, "Invalid beta parameter at index 0: nan"),
    ("Adam", dict(betas=(0.9, 1.0)), ValueError, "Invalid beta parameter at index 1: 1.0"),
    ("Adam", dict(weight_decay=NAN), ValueError, "Invalid weight_decay value: nan"),
    ("Adam", dict(lr="abc"), TypeError, None),
    ("Adam", dict(betas=0.9), TypeError, None),
    ("SGD", dict(lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
    ("SGD", dict(lr=0.1, momentum=-1.0), ValueError, "Invalid momentum value: -1.0"),
    ("SGD", dict(lr=0.1, weight_decay=-1.0), ValueError, "Invalid weight_decay value: -1.0"),
    ("SGD", dict(lr="abc"), TypeError, None),
    ("SGD", dict(lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires"),
]


@pytest.mark.parametrize("opt, kwargs, error, message", REJECTED_BY_BOTH)
def test_hyperparameters_rejected_as_pytorch(opt, kwargs, error, message):
    tg_p, th_p = _params()
    with pytest.raises(error, match=None if message is None else message.replace("(", r"\(")):
        getattr(tg.optim, opt)(tg_p, **kwargs)
    if torch is not None:
        with pytest.raises(error):
            getattr(torch.optim, opt)(th_p, **kwargs)


@pytest.mark.parametrize("opt, kwargs, message", [
    # PyTorch's ``if lr < 0.0`` lets NaN through; tilegrad's checks refuse it everywhere.
    ("SGD", dict(lr=NAN), "Invalid learning rate: nan"),
    ("SGD", dict(lr=0.1, momentum=NAN), "Invalid momentum value: nan"),
    ("SGD", dict(lr=0.1, weight_decay=NAN), "Invalid weight_decay value: nan"),
    ("SGD", dict(lr=0.1, dampening=NAN), "Invalid dampening value: nan"),
])
def test_nan_hyperparameters_are_refused(opt, kwargs, message):
    tg_p, _ = _params()
    with pytest.raises(ValueError, match=message):
        getattr(tg.optim, opt)(tg_p, **kwargs)


def test_param_groups_are_checked_as_the_constructor():
    tg_p, _ = _params()
    with pytest.raises(ValueError, match="Invalid learning rate: nan"):
        tg.optim.SGD([{"params": tg_p[:1], "lr": NAN}], lr=0.1)
    opt = tg.optim.Adam(tg_p[:1])
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        opt.add_param_group({"params": tg_p[1:2], "betas": (0.9, 2.0)})
    with pytest.raises(ValueError, match="more than one parameter group"):   # as PyTorch
        opt.add_param_group({"params": tg_p[:1]})
    with pytest.raises(TypeError):
        opt.add_param_group(tg_p[1:])                 # a group is a dict
    with pytest.raises(TypeError):
        tg.optim.SGD(tg_p[0], lr=0.1)                 # params is an iterable, as PyTorch
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("opt, key, value, error", [
    ("SGD", "lr", "abc", TypeError),             # bug: loaded, then step failed
    ("SGD", "lr", NAN, ValueError),
    ("SGD", "momentum", -0.5, ValueError),
    ("SGD", "nesterov", "yes", TypeError),
    ("SGD", "initial_lr", NAN, ValueError),
    ("Adam", "betas", [0.9, NAN], ValueError),
    ("Adam", "eps", None, TypeError),
])
def test_load_state_dict_checks_options_and_changes_nothing(opt, key, value, error):
    tg_p, _ = _params(seed=17)
    a = _make(opt, tg_p, _two_groups)
    _step_with(a, tg_p, rng(18), 2)
    before = _snapshot(a)
    bad = a.state_dict()
    bad["param_groups"][0]["lr"] = 123.0          # a good change that must not land either
    bad["param_groups"][1][key] = value
    with pytest.raises(error, match="load_state_dict: parameter group 1"):
        a.load_state_dict(bad)
    _assert_unchanged(a, before)


@pytest.mark.parametrize("kwargs, error", [
    (dict(step_size=0), ValueError),
    (dict(step_size=1.5), TypeError),
    (dict(step_size=2, gamma=NAN), ValueError),
    (dict(step_size=2, gamma=-0.5), ValueError),
    (dict(step_size=2, gamma="x"), TypeError),
    (dict(step_size=2, last_epoch=-2), ValueError),
])
def test_steplr_checks_its_arguments(kwargs, error):
    """PyTorch checks none of these (step_size 0 divides by zero in its first step, NaN makes
    every learning rate NaN); tilegrad refuses them with the optimizers' classes."""
    tg_p, _ = _params()
    with pytest.raises(error):
        tg.optim.lr_scheduler.StepLR(tg.optim.SGD(tg_p, lr=0.1), **kwargs)
    with pytest.raises(TypeError):
        tg.optim.lr_scheduler.StepLR(object(), 2)


def test_steplr_load_state_dict_checks_before_changing():
    tg_p, _ = _params()
    s = tg.optim.lr_scheduler.StepLR(tg.optim.SGD(tg_p, lr=0.1), 3, 0.5)
    good = s.state_dict()
    for key, value in [("gamma", NAN), ("step_size", 0), ("base_lrs", [NAN]),
                       ("_last_lr", [0.1, 0.2])]:
        bad = dict(good, **{key: value})
        with pytest.raises((TypeError, ValueError)):
            s.load_state_dict(bad)
        assert s.state_dict() == good, key


# ---------------------------------------------------------------- the device side of a step
# Seven parameters: more than one launch in the simulator (3 a launch), odd sizes, an empty one.
SHAPES7 = [(3, 5), (7,), (2, 3, 4), (1,), (0,), (19,), (2, 2)]
SCHEDULED = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd-momentum": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    "sgd-nesterov": ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    "adam": ("Adam", dict(lr=0.02, betas=(0.8, 0.95), weight_decay=0.1)),
}


@pytest.mark.parametrize("case", list(SCHEDULED))
def test_optimizers_follow_a_step_schedule_like_torch(case, device):
    """The learning rate lives on the device: StepLR's changes (and one by hand) reach it."""
    _need_torch()
    opt, kw = SCHEDULED[case]
    tg_p, th_p = _params(seed=20, shapes=SHAPES7, device=device)
    tg_opt = getattr(tg.optim, opt)([{"params": tg_p[:5]}, {"params": tg_p[5:], "lr": 0.3}], **kw)
    th_opt = getattr(torch.optim, opt)([{"params": th_p[:5]}, {"params": th_p[5:], "lr": 0.3}],
                                       **kw)
    tg_s = tg.optim.lr_scheduler.StepLR(tg_opt, 2, gamma=0.5)
    th_s = torch.optim.lr_scheduler.StepLR(th_opt, 2, gamma=0.5)
    r = rng(21)
    for step in range(7):
        _set_grads(tg_p, th_p, r, skip={2} if step < 2 else ())   # parameter 2 starts late
        if step == 6:     # by hand (last: torch's StepLR would go on from it, ours not)
            tg_opt.param_groups[1]["lr"] = th_opt.param_groups[1]["lr"] = 0.01
        tg_opt.step()
        th_opt.step()
        tg_s.step()
        th_s.step()
    _compare_params(tg_p, th_p)
    names = ["exp_avg", "exp_avg_sq"] if opt == "Adam" else \
        ["momentum_buffer"] if kw.get("momentum") else []
    _compare_state(tg_opt, th_opt, tg_p, th_p, names)


def test_adam_step_is_a_float32_device_tensor_and_saved_as_torch_saves_it(device):
    tg_p, _ = _params(seed=22, device=device)
    opt = tg.optim.Adam(tg_p, lr=0.01)
    _step_with(opt, tg_p, rng(23), 3)
    step = opt.state[tg_p[0]]["step"]
    assert isinstance(step, tg.Tensor) and step.shape == () and step.dtype == tg.float32
    assert step.device == tg_p[0].device and float(step) == 3
    saved = opt.state_dict()["state"][0]["step"]
    assert isinstance(saved, np.ndarray) and saved.shape == () and saved.dtype == np.float32


@pytest.mark.parametrize("step", [4, 4.0, np.int64(4), np.array(4), np.array(4.0, np.float32)],
                         ids=["int", "float", "np.int64", "0-d int", "0-d float32"])
def test_adam_loads_a_step_saved_as_a_number_or_a_0d_array(step, device):
    """Older tilegrad files hold an int, PyTorch's a 0-d float32 tensor: both resume alike."""
    pa, _ = _params(seed=24, device=device)
    a = tg.optim.Adam(pa, lr=0.01)
    _step_with(a, pa, rng(25), 4)
    saved = a.state_dict()
    for s in saved["state"].values():
        s["step"] = step
    pb = [tg.tensor(p.numpy(), requires_grad=True, device=device) for p in pa]
    b = tg.optim.Adam(pb, lr=0.01)
    b.load_state_dict(saved)
    assert float(b.state[pb[0]]["step"]) == 4
    r1, r2 = rng(26), rng(26)
    _step_with(a, pa, r1, 2)
    _step_with(b, pb, r2, 2)
    for x, y in zip(pa, pb):
        np.testing.assert_array_equal(y.numpy(), x.numpy())


@pytest.mark.parametrize("bad", [-1, float("nan"), "3", True])
def test_adam_refuses_a_bad_saved_step_and_changes_nothing(bad):
    tg_p, _ = _params(seed=27)
    a = _make("Adam", tg_p, lambda ps: ps)
    _step_with(a, tg_p, rng(28), 2)
    before = _snapshot(a)
    sd = a.state_dict()
    sd["state"][1]["step"] = bad
    with pytest.raises(ValueError, match="'step' of parameter 1"):
        a.load_state_dict(sd)
    _assert_unchanged(a, before)


def test_zero_grad_set_to_none_false_fills_the_same_gradients_in_place(device):
    tg_p, _ = _params(seed=29, shapes=SHAPES7, device=device)
    opt = tg.optim.SGD(tg_p, lr=0.1)
    for p in tg_p[1:]:                          # parameter 0 keeps no gradient
        p.grad = tg.tensor(rng(30).standard_normal(p.shape), device=device)
    grads = [p.grad for p in tg_p]
    versions = [g._version for g in grads[1:]]
    opt.zero_grad(set_to_none=False)
    assert tg_p[0].grad is None
    for p, g, v in zip(tg_p[1:], grads[1:], versions):
        assert p.grad is g and g._version == v + 1
        np.testing.assert_array_equal(g.numpy(), np.zeros(p.shape))


# ---------------------------------------------------------------- "cuda": launches, capture
needs_cuda = pytest.mark.skipif(not tg.device("cuda").available,
                                reason=f"device cuda unavailable: {tg.device('cuda').reason}")


def _cuda_rt():
    from tilegrad.backends.cuda import optim as cuda_optim
    from tilegrad.backends.cuda import runtime as rt
    return rt, cuda_optim


@needs_cuda
def test_zero_grad_is_one_launch_for_a_launch_s_worth_of_gradients():
    rt, cuda_optim = _cuda_rt()
    from tilegrad.backends.cuda.foreach import TENSORS
    tg_p, _ = _params(seed=31, shapes=SHAPES7[:TENSORS], device="cuda")
    opt = tg.optim.SGD(tg_p, lr=0.1)
    for p in tg_p:
        p.grad = tg.tensor(rng(32).standard_normal(p.shape), device="cuda")
    before = rt.counts()
    opt.zero_grad(set_to_none=False)
    after = rt.counts()
    assert after["kernels"] - before["kernels"] == 1 and after["copies"] == before["copies"]
    assert all(not p.grad.numpy().any() for p in tg_p)


@needs_cuda
@pytest.mark.parametrize("case", ["adam", "sgd", "sgd-momentum"])
def test_launches_per_step_and_no_host_transfer(case, monkeypatch):
    """Adam over 7 parameters: one launch counts the steps (per 64), one updates (per 12); SGD:
    one per 16 parameters, plus one counting momentum steps. 3 a launch in the simulator."""
    rt, cuda_optim = _cuda_rt()
    tg_p, _ = _params(seed=33, shapes=SHAPES7, device="cuda")
    opt = tg.optim.Adam(tg_p, lr=0.01) if case == "adam" else \
        tg.optim.SGD(tg_p, lr=0.1, momentum=0.9 if case == "sgd-momentum" else 0)
    r = rng(34)
    _step_with(opt, tg_p, r, 1)               # makes the state, uploads lr and block tables
    for p in tg_p:
        p.grad = tg.tensor(r.standard_normal(p.shape), device="cuda")

    def refuse(*args, **kwargs):
        raise AssertionError("a step touched the host")
    for name in ("to_numpy", "from_numpy", "synchronize", "constant"):
        monkeypatch.setattr(rt, name, refuse)
    before = rt.counts()
    opt.step()
    after = rt.counts()
    monkeypatch.undo()
    n, ceil = len(SHAPES7), lambda a, b: -(-a // b)
    want = {"adam": ceil(n, cuda_optim.COUNT_TENSORS) + ceil(n, cuda_optim.ADAM_TENSORS),
            "sgd": ceil(n, cuda_optim.SGD_TENSORS),
            "sgd-momentum": ceil(n, cuda_optim.COUNT_TENSORS) + ceil(n, cuda_optim.SGD_TENSORS)}
    assert after["kernels"] - before["kernels"] == want[case]
    assert after["copies"] == before["copies"]


def _capture(fn):
    g = tg.cuda.CUDAGraph()
    with tg.cuda.graph(g):
        fn()
    return g


@needs_cuda
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_a_replayed_step_counts_steps_and_follows_the_schedule_bit_for_bit(opt):
    """A step captured once and replayed equals eager steps on "cuda" exactly, and torch's."""
    _need_torch()
    kw = dict(lr=0.05, momentum=0.9, dampening=0.1) if opt == "SGD" else dict(lr=0.02)
    r = rng(35)
    grads = [[r.standard_normal(s) for s in SHAPES7] for _ in range(6)]
    runs = []
    for replayed in (False, True):
        tg_p, th_p = _params(seed=36, shapes=SHAPES7, device="cuda")
        o = getattr(tg.optim, opt)(tg_p, **kw)
        s = tg.optim.lr_scheduler.StepLR(o, 2, gamma=0.3)
        graph = None
        for k, gs in enumerate(grads):
            for p, g in zip(tg_p, gs):
                if p.grad is None or not replayed:
                    p.grad = tg.tensor(g, device="cuda")
                else:
                    p.grad.copy_(tg.tensor(g, device="cuda"))
            if replayed and k == 1:
                graph = _capture(o.step)
            if graph is not None:
                graph.replay()
            else:
                o.step()
            s.step()
        runs.append((tg_p, o))
    (ep, eo), (rp, ro) = runs
    for k, (a, b) in enumerate(zip(ep, rp)):
        np.testing.assert_array_equal(b.numpy(), a.numpy(), err_msg=f"parameter {k}")
    for a, b in zip(ep, rp):
        for name, v in eo.state[a].items():
            np.testing.assert_array_equal(ro.state[b][name].numpy(), v.numpy(), err_msg=name)
    th_p = _params(seed=36, shapes=SHAPES7)[1]
    th_o = getattr(torch.optim, opt)(th_p, **kw)
    th_s = torch.optim.lr_scheduler.StepLR(th_o, 2, gamma=0.3)
    for gs in grads:
        for p, g in zip(th_p, gs):
            p.grad = torch.tensor(g)
        th_o.step()
        th_s.step()
    _compare_params(rp, th_p)


@needs_cuda
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_host_work_of_a_step_while_capturing_raises_and_changes_nothing(opt):
    from tilegrad.errors import CaptureError
    kw = dict(lr=0.05, momentum=0.9) if opt == "SGD" else dict(lr=0.02)
    tg_p, _ = _params(seed=37, device="cuda")
    o = getattr(tg.optim, opt)(tg_p, **kw)
    s = tg.optim.lr_scheduler.StepLR(o, 1, gamma=0.5)
    for p in tg_p:
        p.grad = tg.tensor(rng(38).standard_normal(p.shape), device="cuda")
    before = [p.numpy() for p in tg_p]
    with pytest.raises(CaptureError, match="run one step before capturing"):
        _capture(o.step)                                  # the first step makes the state
    assert o.state == {} and [p.numpy().tolist() for p in tg_p] == [b.tolist() for b in before]
    o.step()
    before = [p.numpy() for p in tg_p], o.state_dict()
    o.param_groups[0]["lr"] = 0.5
    with pytest.raises(CaptureError, match="learning rate 0.5"):
        _capture(o.step)
    o.param_groups[0]["lr"] = kw["lr"]
    with pytest.raises(CaptureError, match="learning rate"):
        _capture(s.step)                                  # a scheduler writes at once
    assert s.last_epoch == 0 and o.param_groups[0]["lr"] == kw["lr"]
    for p, b in zip(tg_p, before[0]):
        np.testing.assert_array_equal(p.numpy(), b)
    for k, v in o.state_dict()["state"].items():
        for name, x in v.items():
            np.testing.assert_array_equal(x, before[1]["state"][k][name])
