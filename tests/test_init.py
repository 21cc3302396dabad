"""nn.init against torch.nn.init: gains, the bounds and standard deviations torch's formulas give
(the samples are drawn from tilegrad's generator, so they are compared by statistics: inside the
bound, reaching near it, sample std within a few percent on a large tensor), orthogonality,
and the errors torch raises for tensors of fewer than 2 dimensions."""
import math

import numpy as np
import pytest

import tilegrad as tg
from helpers import torch
from tilegrad.nn import init

pytestmark = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
BIG = (301, 7, 3, 5)       # ~30 000 samples: the sample std is within ~1% of the true one


def _fans(shape):
    return torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("nonlinearity, param", [
    ("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
    ("leaky_relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0), ("selu", None),
    ("conv_transpose3d", None)])
def test_calculate_gain_as_torch(nonlinearity, param):
    assert init.calculate_gain(nonlinearity, param) == \
        torch.nn.init.calculate_gain(nonlinearity, param)


def test_calculate_gain_refuses_what_torch_refuses():
    for args in (("swish",), ("leaky_relu", "x")):
        with pytest.raises(ValueError):
            init.calculate_gain(*args)
        with pytest.raises(ValueError):
            torch.nn.init.calculate_gain(*args)


def _check_uniform(t, bound):
    x = t.numpy()
    assert np.abs(x).max() <= bound and np.abs(x).max() > 0.99 * bound
    assert abs(x.std() / (bound / math.sqrt(3)) - 1) < 0.03
    assert abs(x.mean()) < 0.03 * bound


def _check_normal(t, std):
    x = t.numpy()
    assert abs(x.std() / std - 1) < 0.03 and abs(x.mean()) < 0.03 * std


@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_xavier_as_torch_s_formula(gain):
    fan_in, fan_out = _fans(BIG)
    t = tg.ones(BIG, dtype=tg.float64)
    assert init.xavier_uniform_(t, gain=gain) is t
    _check_uniform(t, gain * math.sqrt(6.0 / (fan_in + fan_out)))
    _check_normal(init.xavier_normal_(t, gain=gain), gain * math.sqrt(2.0 / (fan_in + fan_out)))


@pytest.mark.parametrize("a, mode, nonlinearity", [
    (0, "fan_in", "leaky_relu"), (math.sqrt(5), "fan_in", "leaky_relu"),
    (0.1, "fan_out", "leaky_relu"), (0, "fan_out", "relu"), (0, "fan_in", "tanh")])
def test_kaiming_as_torch_s_formula(a, mode, nonlinearity):
    fan_in, fan_out = _fans(BIG)
    fan = fan_in if mode == "fan_in" else fan_out
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    t = tg.ones(BIG, dtype=tg.float64)
    _check_uniform(init.kaiming_uniform_(t, a=a, mode=mode, nonlinearity=nonlinearity),
                   math.sqrt(3.0) * std)
    _check_normal(init.kaiming_normal_(t, a=a, mode=mode, nonlinearity=nonlinearity), std)


def test_trunc_normal_statistics_as_torch_s():
    t = tg.ones(BIG, dtype=tg.float64)
    ref = torch.empty(BIG, dtype=torch.float64)
    for mean, std, a, b in [(0.0, 1.0, -2.0, 2.0), (0.5, 2.0, -1.0, 3.0), (0.0, 0.02, -0.04, 0.1)]:
        x = init.trunc_normal_(t, mean, std, a, b).numpy()
        y = torch.nn.init.trunc_normal_(ref, mean, std, a, b).numpy()
        assert x.min() >= a and x.max() <= b
        assert abs(x.mean() - y.mean()) < 0.03 * std and abs(x.std() / y.std() - 1) < 0.03


@pytest.mark.parametrize("shape", [(3, 7), (7, 3), (4, 2, 3), (5, 5)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    t = tg.ones(shape, dtype=tg.float64)
    q = init.orthogonal_(t, gain=2.0).numpy().reshape(shape[0], -1) / 2.0
    small = min(q.shape)
    gram = q @ q.T if q.shape[0] == small else q.T @ q
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


def test_constant_and_the_device(device):
    t = tg.ones((3, 5), dtype=tg.float32, device=device)
    v = t._version
    init.constant_(t, 0.25)
    assert t._version == v + 1 and (t.numpy() == np.float32(0.25)).all()
    init.xavier_uniform_(t)
    assert np.abs(t.numpy()).max() <= math.sqrt(6.0 / 8) * (1 + 1e-6)


@pytest.mark.parametrize("fn", ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                                "kaiming_normal_", "orthogonal_"])
def test_fewer_than_2_dimensions_raise_as_torch(fn):
    t = tg.tensor([1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        getattr(init, fn)(t)
    with pytest.raises(ValueError):
        getattr(torch.nn.init, fn)(torch.ones(3))
    assert t.numpy().tolist() == [1.0, 2.0, 3.0]


def test_kaiming_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="fan_middle"):
        init.kaiming_normal_(tg.ones((3, 4)), mode="fan_middle")
