"""Parameter initialisation in place, as torch.nn.init, drawing from tilegrad's generator."""
from __future__ import annotations

import math

import numpy as np

from .. import random
from ..autograd import no_grad
from ..tensor import Tensor


def _fill(tensor, values):
    with no_grad():
        be = tensor.device.backend
        be.copy_into(tensor._data, be.from_numpy(np.asarray(values, dtype=tensor.dtype)))
    tensor._version_counter.bump("nn.init")   # an in-place write, as any other
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill ``tensor`` with draws from U(a, b)."""
    return _fill(tensor, random.generator().uniform(a, b, tensor.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill ``tensor`` with draws from N(mean, std^2)."""
    return _fill(tensor, random.generator().normal(mean, std, tensor.shape))


def zeros_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with zeros."""
    return _fill(tensor, np.zeros(tensor.shape))


def ones_(tensor: Tensor) -> Tensor:
    """Fill ``tensor`` with ones."""
    return _fill(tensor, np.ones(tensor.shape))


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill ``tensor`` with ``val``."""
    return _fill(tensor, np.full(tensor.shape, val))


_GAIN_ONE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
             "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended scale of an initialisation for ``nonlinearity``, as torch's: 1 for
    linear, convolutions and sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2))
    for leaky_relu (``param`` the slope, 0.01 by default), 3/4 for selu."""
    if nonlinearity in _GAIN_ONE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 "
                         f"dimensions (got shape {tensor.shape})")
    receptive = int(np.prod(tensor.shape[2:], dtype=np.int64))
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot and Bengio)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))`` (Glorot and Bengio)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
    return normal_(tensor, 0.0, std)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan)`` (He et al.), ``fan`` the fan in or
    out (``mode``), ``gain = calculate_gain(nonlinearity, a)``. With ``a = sqrt(5)`` (PyTorch's
    Linear and Conv default) the bound is ``1 / sqrt(fan_in)``. A tensor with no elements is
    left as it is."""
    fan = _fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    bound = gain * math.sqrt(3.0 / fan) if fan else 0.0
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:
    """N(0, std^2) with ``std = gain / sqrt(fan)`` (He et al.); arguments as
    ``kaiming_uniform_``."""
    fan = _fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    return normal_(tensor, 0.0, gain / math.sqrt(fan) if fan else 0.0)


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0) -> Tensor:
    """N(mean, std^2) restricted to [a, b]: draws outside are drawn again (rejection; torch
    uses the inverse CDF: the same distribution, other values)."""
    if not a < b or not std > 0:
        raise ValueError(f"trunc_normal_: need a < b and std > 0, got a={a}, b={b}, std={std}")
    cdf = lambda x: 0.5 * (1 + math.erf((x - mean) / (std * math.sqrt(2))))  # noqa: E731
    if cdf(b) - cdf(a) < 1e-4:
        raise ValueError(f"trunc_normal_: [{a}, {b}] holds almost none of N({mean}, {std}^2)")
    gen, n = random.generator(), int(np.prod(tensor.shape, dtype=np.int64))
    out = np.empty(0)
    while out.size < n:
        x = gen.normal(mean, std, 2 * (n - out.size) + 16)
        out = np.concatenate([out, x[(x >= a) & (x <= b)]])
    return _fill(tensor, out[:n].reshape(tensor.shape))


def orthogonal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """A (semi-)orthogonal matrix (Saxe et al.) from the QR decomposition of a normal sample,
    signs fixed as torch's, times ``gain``; dimensions after the first are flattened."""
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    flat = random.generator().normal(0.0, 1.0, (rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(tensor.shape))
