"""Activations (gelu, tanh, sigmoid, leaky_relu and their modules, Identity, Softmax,
LogSoftmax), the erf primitive of every backend, and pad, one_hot and avg_pool2d, against
PyTorch in float64 (values and input gradients) and the NumPy backend; on every device for a few
tiny cases; argument errors."""
import math

import numpy as np
import pytest

import tilegrad as tg
import tilegrad.nn.functional as F
from helpers import torch
from tilegrad.backends import numpy as spec
from tilegrad.testing import assert_close, compare_with_torch, gradcheck, rng

TF = torch.nn.functional if torch is not None else None
R = rng(5)

# ---------------------------------------------------------------- erf, every backend

ERF_EDGES = np.array([0.0, -0.0, 1e-300, -1e-8, 0.5, -0.5, 1.0, 3.0, -6.0, 27.0, np.inf, -np.inf])


def test_numpy_erf_is_math_erf():
    x = np.concatenate([ERF_EDGES, 4 * R.standard_normal(37)])
    assert_close(spec.unary("erf", x), [math.erf(v) for v in x], rtol=0, atol=0)
    assert np.isnan(spec.unary("erf", np.array([np.nan])))[0]
    assert spec.unary("erf", x.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_erf_matches_the_numpy_backend(device, dtype):
    x = np.concatenate([ERF_EDGES, 4 * R.standard_normal(13)]).astype(dtype)
    be = tg.device(device).backend
    got = be.to_numpy(be.unary("erf", be.from_numpy(x)))
    assert got.dtype == dtype
    # float32: libm's and libdevice's erff are within a few ulp of the correctly rounded value
    assert_close(got, spec.unary("erf", x), rtol=4e-7 if dtype == np.float32 else 1e-15,
                 atol=0)


# ---------------------------------------------------------------- activations

ACTIVATIONS = [
    pytest.param(F.gelu, TF and TF.gelu, id="gelu"),
    pytest.param(lambda x: F.gelu(x, approximate="tanh"),
                 lambda x: TF.gelu(x, approximate="tanh"), id="gelu-tanh"),
    pytest.param(F.tanh, TF and torch.tanh, id="tanh"),
    pytest.param(F.sigmoid, TF and torch.sigmoid, id="sigmoid"),
    pytest.param(F.leaky_relu, TF and TF.leaky_relu, id="leaky_relu"),
    pytest.param(lambda x: F.leaky_relu(x, 0.2), lambda x: TF.leaky_relu(x, 0.2),
                 id="leaky_relu-0.2"),
    pytest.param(tg.nn.GELU(), TF and torch.nn.GELU(), id="GELU"),
    pytest.param(tg.nn.GELU("tanh"), TF and torch.nn.GELU("tanh"), id="GELU-tanh"),
    pytest.param(tg.nn.LeakyReLU(0.3), TF and torch.nn.LeakyReLU(0.3), id="LeakyReLU"),
    pytest.param(tg.nn.Tanh(), TF and torch.nn.Tanh(), id="Tanh"),
    pytest.param(tg.nn.Sigmoid(), TF and torch.nn.Sigmoid(), id="Sigmoid"),
    pytest.param(tg.nn.Softmax(dim=0), TF and torch.nn.Softmax(dim=0), id="Softmax-0"),
    pytest.param(tg.nn.LogSoftmax(dim=1), TF and torch.nn.LogSoftmax(dim=1), id="LogSoftmax-1"),
    pytest.param(tg.nn.Identity(3, k=5), TF and torch.nn.Identity(3, k=5), id="Identity"),
]


@pytest.mark.parametrize("ours, theirs", ACTIVATIONS)
def test_activation_matches_torch(ours, theirs):
    x = 3 * R.standard_normal((3, 7))
    x[0, :3] = [0.0, 1e-9, -40.0]      # the kink, a tiny value, a saturated tail
    compare_with_torch(ours, theirs, x)


@pytest.mark.parametrize("ours, theirs", ACTIVATIONS[:5])
def test_activation_on_device_matches_torch(device, ours, theirs):
    tg.set_default_device(device)        # the fixture resets it
    compare_with_torch(ours, theirs, R.standard_normal((3, 5)))


def test_gelu_gradient_matches_central_differences():
    gradcheck(F.gelu, R.standard_normal((3, 5)))
    gradcheck(lambda x: F.gelu(x, "tanh"), R.standard_normal((3, 5)))


def test_inplace_relu_and_leaky_relu_write_their_input():
    for fn, ref in ((lambda t: F.relu(t, inplace=True), lambda a: np.maximum(a, 0)),
                    (tg.nn.ReLU(inplace=True), lambda a: np.maximum(a, 0)),
                    (tg.nn.LeakyReLU(0.1, inplace=True), lambda a: np.where(a > 0, a, 0.1 * a))):
        a = R.standard_normal((3, 5))
        x = tg.tensor(a)
        assert fn(x) is x
        assert_close(x, ref(a), rtol=0, atol=0)
    leaf = tg.tensor(a, requires_grad=True)
    y = leaf * 2
    F.leaky_relu(y, 0.1, inplace=True).sum().backward()     # y's history now ends in the op
    assert_close(leaf.grad, np.where(a > 0, 2.0, 0.2))
    with pytest.raises(RuntimeError):
        F.relu(leaf, inplace=True)                          # a leaf that requires grad


def test_softmax_without_dim_warns_and_picks_torchs_dim():
    x = R.standard_normal((3, 5))
    for mod, th in ((tg.nn.Softmax(), torch.nn.Softmax()),
                    (tg.nn.LogSoftmax(), torch.nn.LogSoftmax())):
        for shape in ((5,), (3, 5), (2, 3, 5)):
            a = R.standard_normal(shape)
            with pytest.warns(UserWarning):
                out = mod(tg.tensor(a))
            with pytest.warns(UserWarning):
                assert_close(out, th(torch.tensor(a)))
    assert repr(tg.nn.GELU("tanh")) == "GELU(approximate='tanh')"
    assert tg.nn.Identity()(tg.tensor(x)).shape == (3, 5)


# ---------------------------------------------------------------- pad, one_hot, avg_pool2d

PADS = [
    pytest.param((2, 5, 3), (1, 2), "constant", id="constant-last"),
    pytest.param((2, 5, 3), (1, 0, 2, 3, 0, 1), "constant", id="constant-all-dims"),
    pytest.param((3, 7), (-2, 1, 1, -3), "constant", id="constant-negative-crops"),
    pytest.param((2, 3, 5), (2, 1), "reflect", id="reflect-1d"),
    pytest.param((1, 2, 5, 4), (3, 1, 2, 4), "reflect", id="reflect-2d"),
    pytest.param((2, 3, 4), (3, 2), "replicate", id="replicate-1d"),
    pytest.param((1, 1, 3, 5, 2), (1, 2, 0, 3, 2, 1), "replicate", id="replicate-3d"),
    pytest.param((2, 3, 5), (5, 2), "circular", id="circular-1d"),
    pytest.param((2, 3, 5, 4), (1, -1, 2, 3), "circular", id="circular-2d-negative"),
]


@pytest.mark.parametrize("shape, pad, mode", PADS)
def test_pad_matches_torch(shape, pad, mode):
    compare_with_torch(lambda x: F.pad(x, pad, mode), lambda x: TF.pad(x, pad, mode),
                       R.standard_normal(shape))


def test_pad_constant_value_on_device_matches_torch(device):
    tg.set_default_device(device)
    compare_with_torch(lambda x: F.pad(x, (1, 2, -1, 1), value=0.5),
                       lambda x: TF.pad(x, (1, 2, -1, 1), value=0.5), R.standard_normal((2, 3)))
    compare_with_torch(lambda x: F.pad(x, (2, 1), "reflect"),
                       lambda x: TF.pad(x, (2, 1), "reflect"), R.standard_normal((1, 2, 3)))


def test_pad_integer_tensor_and_one_hot_match_torch(device):
    a = R.integers(0, 7, (3, 5))
    x = tg.tensor(a, device=device)
    assert_close(F.pad(x, (1, 1), value=3), TF.pad(torch.tensor(a), (1, 1), value=3))
    for k in (-1, 9):
        out = F.one_hot(x, k)
        assert out.dtype == tg.int64
        assert_close(out, TF.one_hot(torch.tensor(a), k), rtol=0, atol=0)


AVG_POOLS = [
    pytest.param((2, 3, 7, 5), dict(kernel_size=3), id="k3"),
    pytest.param((2, 3, 7, 5), dict(kernel_size=(3, 2), stride=(2, 1), padding=1), id="rect-pad"),
    pytest.param((3, 7, 5), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
                 id="unbatched-exclude-pad"),
    pytest.param((1, 2, 5, 5), dict(kernel_size=2, divisor_override=3), id="divisor"),
]


@pytest.mark.parametrize("shape, kwargs", AVG_POOLS)
def test_avg_pool2d_matches_torch(shape, kwargs):
    compare_with_torch(lambda x: F.avg_pool2d(x, **kwargs), lambda x: TF.avg_pool2d(x, **kwargs),
                       R.standard_normal(shape))
    compare_with_torch(tg.nn.AvgPool2d(**kwargs), torch.nn.AvgPool2d(**kwargs),
                       R.standard_normal(shape))


def test_avg_pool2d_on_device_matches_torch(device):
    tg.set_default_device(device)
    compare_with_torch(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                       lambda x: TF.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                       R.standard_normal((1, 2, 5, 3)))


@pytest.mark.parametrize("call, error", [
    (lambda: F.gelu(tg.randn(3), approximate="fast"), ValueError),
    (lambda: F.gelu(tg.tensor([1, 2])), TypeError),
    (lambda: F.leaky_relu(tg.randn(3), "0.1"), TypeError),
    (lambda: tg.nn.Softmax(dim=1.0), TypeError),
    (lambda: F.pad(tg.randn(3, 4), (1, 2, 3)), RuntimeError),
    (lambda: F.pad(tg.randn(3, 4), (1, 1, 1, 1, 1, 1)), RuntimeError),
    (lambda: F.pad(tg.randn(3, 4), (-3, -2)), RuntimeError),
    (lambda: F.pad(tg.randn(1, 3, 4), (4, 0), "reflect"), RuntimeError),
    (lambda: F.pad(tg.randn(4), (1, 1), "reflect"), NotImplementedError),
    (lambda: F.pad(tg.randn(1, 4), (1, 1), "mirror"), NotImplementedError),
    (lambda: F.pad(tg.randn(1, 4), (1, 1), "replicate", value=2.0), RuntimeError),
    (lambda: F.one_hot(tg.tensor([0, 3]), 3), RuntimeError),
    (lambda: F.one_hot(tg.tensor([0, -1])), RuntimeError),
    (lambda: F.one_hot(tg.tensor([0.0, 1.0])), TypeError),
    (lambda: F.avg_pool2d(tg.randn(1, 1, 4, 4), 2, padding=2), RuntimeError),
    (lambda: F.avg_pool2d(tg.randn(1, 1, 4, 4), 2, ceil_mode=True), NotImplementedError),
    (lambda: F.avg_pool2d(tg.randn(4, 4), 2), ValueError),
])
def test_bad_arguments_raise(call, error):
    with pytest.raises(error):
        call()
