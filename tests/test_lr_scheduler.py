"""Learning-rate schedules against torch.optim.lr_scheduler: the learning-rate sequences over 25
epochs on two parameter groups (equal to the last bit: both run torch's formulas), state dicts
(ours round trip, torch's load), ReduceLROnPlateau on a metric sequence, argument checks."""
import math

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.testing import rng

pytestmark = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
EPOCHS = 25


def _optimizers(lrs=(0.7, 0.3)):
    r = rng(0)
    arrays = [r.standard_normal((3, 2)), r.standard_normal(5)]
    tg_p = [tg.tensor(a, requires_grad=True) for a in arrays]
    th_p = [torch.tensor(a, requires_grad=True) for a in arrays]
    groups = lambda ps: [{"params": [ps[0]], "lr": lrs[0]}, {"params": [ps[1]], "lr": lrs[1]}]  # noqa: E731,E501
    return tg.optim.SGD(groups(tg_p), lr=0.1), torch.optim.SGD(groups(th_p), lr=0.1)


class Warmup:
    """A callable object: LambdaLR saves its attributes, not the function."""

    def __init__(self, epochs):
        self.epochs = epochs

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.epochs)


SCHEDULES = {
    "step": ("StepLR", dict(step_size=4, gamma=0.5)),
    "multistep": ("MultiStepLR", dict(milestones=[3, 8, 8, 15], gamma=0.3)),
    "exponential": ("ExponentialLR", dict(gamma=0.9)),
    "cosine": ("CosineAnnealingLR", dict(T_max=7)),          # 25 epochs: up and down again
    "cosine-eta-min": ("CosineAnnealingLR", dict(T_max=10, eta_min=0.05)),
    "lambda": ("LambdaLR", dict(lr_lambda=lambda e: 0.95 ** e)),
    "lambda-list": ("LambdaLR", dict(lr_lambda=[lambda e: 1 / (1 + e), Warmup(5)])),
}


def _pair(case, lrs=(0.7, 0.3)):
    name, kw = SCHEDULES[case]
    tg_o, th_o = _optimizers(lrs)
    return (tg_o, getattr(tg.optim.lr_scheduler, name)(tg_o, **kw),
            th_o, getattr(torch.optim.lr_scheduler, name)(th_o, **kw))


def _assert_same(tg_o, tg_s, th_o, th_s, epoch):
    assert tg_s.get_last_lr() == th_s.get_last_lr(), f"epoch {epoch}"
    assert [g["lr"] for g in tg_o.param_groups] == [g["lr"] for g in th_o.param_groups]
    assert tg_s.last_epoch == th_s.last_epoch


@pytest.mark.parametrize("case", list(SCHEDULES))
def test_schedule_matches_torch(case):
    tg_o, tg_s, th_o, th_s = _pair(case)
    seen = set()
    for epoch in range(EPOCHS):
        _assert_same(tg_o, tg_s, th_o, th_s, epoch)
        seen.add(tg_s.get_last_lr()[0])
        th_o.step()              # torch warns when a scheduler steps before its optimizer
        tg_s.step()
        th_s.step()
    _assert_same(tg_o, tg_s, th_o, th_s, EPOCHS)
    assert len(seen) > 2


@pytest.mark.parametrize("case", ["step", "multistep", "exponential", "cosine"])
def test_a_rate_set_by_hand_is_followed_as_torch(case):
    tg_o, tg_s, th_o, th_s = _pair(case)
    for epoch in range(12):
        if epoch == 5:
            tg_o.param_groups[1]["lr"] = th_o.param_groups[1]["lr"] = 0.05
        th_o.step()
        tg_s.step()
        th_s.step()
        _assert_same(tg_o, tg_s, th_o, th_s, epoch)


@pytest.mark.parametrize("case", list(SCHEDULES))
def test_state_dict_round_trip_continues_identically(case):
    tg_o, tg_s, th_o, th_s = _pair(case)
    for _ in range(6):
        tg_s.step()
    opt_sd, s_sd = tg_o.state_dict(), tg_s.state_dict()
    assert "optimizer" not in s_sd and s_sd["last_epoch"] == 6
    name, kw = SCHEDULES[case]
    o2, _ = _optimizers(lrs=(0.9, 0.9))
    s2 = getattr(tg.optim.lr_scheduler, name)(o2, **kw)
    o2.load_state_dict(opt_sd)
    s2.load_state_dict(s_sd)
    assert s2.get_last_lr() == tg_s.get_last_lr() and s2.last_epoch == 6
    for epoch in range(7, 20):
        tg_s.step()
        s2.step()
        assert s2.get_last_lr() == tg_s.get_last_lr(), f"epoch {epoch}"


@pytest.mark.parametrize("case", ["step", "multistep", "cosine", "lambda-list"])
def test_torch_state_dict_loads_and_continues_like_torch(case):
    tg_o, tg_s, th_o, th_s = _pair(case)
    for _ in range(9):
        th_o.step()
        th_s.step()
    tg_o.load_state_dict({"state": {}, "param_groups": [dict(g) for g in
                                                        th_o.state_dict()["param_groups"]]})
    tg_s.load_state_dict(th_s.state_dict())
    _assert_same(tg_o, tg_s, th_o, th_s, 9)
    for epoch in range(10, 20):
        th_o.step()
        tg_s.step()
        th_s.step()
        _assert_same(tg_o, tg_s, th_o, th_s, epoch)


def test_lambda_lr_saves_a_callable_object_s_attributes_not_functions():
    tg_o, tg_s, th_o, th_s = _pair("lambda-list")
    sd, ref = tg_s.state_dict(), th_s.state_dict()
    assert sd["lr_lambdas"] == ref["lr_lambdas"] == [None, {"epochs": 5}]
    sd["lr_lambdas"][1] = {"epochs": 9}
    tg_s.load_state_dict(sd)
    assert tg_s.lr_lambdas[1].epochs == 9 and callable(tg_s.lr_lambdas[0])


def test_resuming_needs_initial_lr_and_uses_it():
    tg_o, th_o = _optimizers()
    with pytest.raises(KeyError, match="initial_lr"):
        tg.optim.lr_scheduler.ExponentialLR(tg_o, 0.5, last_epoch=3)
    with pytest.raises(KeyError):
        torch.optim.lr_scheduler.ExponentialLR(th_o, 0.5, last_epoch=3)
    for o in (tg_o, th_o):
        for g in o.param_groups:
            g["initial_lr"] = 1.0
    tg_s = tg.optim.lr_scheduler.CosineAnnealingLR(tg_o, 10, last_epoch=3)
    th_s = torch.optim.lr_scheduler.CosineAnnealingLR(th_o, 10, last_epoch=3)
    for epoch in range(5):
        _assert_same(tg_o, tg_s, th_o, th_s, epoch)
        th_o.step()
        tg_s.step()
        th_s.step()


# ---------------------------------------------------------------- ReduceLROnPlateau
PLATEAU = {
    "default": dict(patience=2),
    "max-abs": dict(mode="max", threshold_mode="abs", threshold=0.05, factor=0.5, patience=1),
    "cooldown-min-lr": dict(factor=0.5, patience=0, cooldown=2, min_lr=[0.1, 0.01]),
    "eps": dict(factor=0.9, patience=0, eps=0.05),
}


@pytest.mark.parametrize("case", list(PLATEAU))
def test_reduce_on_plateau_matches_torch(case):
    kw = PLATEAU[case]
    tg_o, th_o = _optimizers()
    tg_s = tg.optim.lr_scheduler.ReduceLROnPlateau(tg_o, **kw)
    th_s = torch.optim.lr_scheduler.ReduceLROnPlateau(th_o, **kw)
    r = rng(1)
    metrics = np.concatenate([np.linspace(1.0, 0.5, 5), 0.5 + 0.02 * r.standard_normal(25)])
    changes = 0
    for k, m in enumerate(metrics):
        before = tg_s.get_last_lr()
        tg_s.step(m if k % 2 else tg.tensor(m))        # a number or a 0-d tensor
        th_s.step(m)
        _assert_same(tg_o, tg_s, th_o, th_s, k)
        assert tg_s.num_bad_epochs == th_s.num_bad_epochs and tg_s.best == th_s.best
        changes += tg_s.get_last_lr() != before
    assert changes >= 1
    sd = tg_s.state_dict()
    o2, _ = _optimizers()
    s2 = tg.optim.lr_scheduler.ReduceLROnPlateau(o2)
    o2.load_state_dict(tg_o.state_dict())
    s2.load_state_dict(sd)
    s2.load_state_dict(th_s.state_dict())        # torch's loads as well
    for m in metrics[:8]:
        tg_s.step(m)
        s2.step(m)
        assert s2.get_last_lr() == tg_s.get_last_lr()


@pytest.mark.parametrize("kwargs, error", [
    (dict(factor=1.0), ValueError), (dict(mode="middle"), ValueError),
    (dict(threshold_mode="x"), ValueError), (dict(patience=-1), ValueError),
    (dict(patience=1.5), TypeError), (dict(min_lr=[0.1]), ValueError),
])
def test_reduce_on_plateau_checks_its_arguments(kwargs, error):
    tg_o, _ = _optimizers()
    with pytest.raises(error):
        tg.optim.lr_scheduler.ReduceLROnPlateau(tg_o, **kwargs)


# ---------------------------------------------------------------- argument checks
@pytest.mark.parametrize("name, kwargs, error", [
    ("MultiStepLR", dict(milestones=[2.5]), TypeError),
    ("MultiStepLR", dict(milestones=[2], gamma=float("nan")), ValueError),
    ("ExponentialLR", dict(gamma=-0.5), ValueError),
    ("CosineAnnealingLR", dict(T_max=0), ValueError),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=-1.0), ValueError),
    ("LambdaLR", dict(lr_lambda=[lambda e: 1.0]), ValueError),          # two groups
    ("LambdaLR", dict(lr_lambda=3), TypeError),
    ("StepLR", dict(step_size=2, last_epoch=-2), ValueError),
])
def test_bad_arguments_raise(name, kwargs, error):
    tg_o, _ = _optimizers()
    with pytest.raises(error):
        getattr(tg.optim.lr_scheduler, name)(tg_o, **kwargs)
    assert all("initial_lr" not in g for g in tg_o.param_groups) or name == "LambdaLR"


@pytest.mark.parametrize("case, key, value", [
    ("cosine", "T_max", 0), ("exponential", "gamma", math.nan), ("multistep", "last_epoch", 1.5),
    ("cosine", "base_lrs", [0.1]), ("step", "_last_lr", [math.nan, 0.1]),
])
def test_load_state_dict_checks_before_changing(case, key, value):
    _, s, _, _ = _pair(case)
    s.step()
    good = s.state_dict()
    with pytest.raises((TypeError, ValueError), match="load_state_dict"):
        s.load_state_dict(dict(good, **{key: value}))
    assert s.state_dict() == good
