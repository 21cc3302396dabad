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
    return _fill(tensor, random.generator().uniform(a, b, tensor.shape))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    return _fill(tensor, random.generator().normal(mean, std, tensor.shape))


def zeros_(tensor: Tensor) -> Tensor:
    return _fill(tensor, np.zeros(tensor.shape))


def ones_(tensor: Tensor) -> Tensor:
    return _fill(tensor, np.ones(tensor.shape))


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.ndim < 2:
        raise ValueError("fan in and fan out need a tensor of at least 2 dimensions, "
                         f"got {tensor.shape}")
    receptive = int(np.prod(tensor.shape[2:], dtype=np.int64))
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def kaiming_uniform_(tensor: Tensor, a: float = 0.0,
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """U(-bound, bound) with ``bound = gain * sqrt(3 / fan_in)``; the gain of leaky_relu with
    slope ``a`` is ``sqrt(2 / (1 + a^2))``. With ``a = sqrt(5)`` (PyTorch's Linear and Conv
    default) the bound is ``1 / sqrt(fan_in)``."""
    fan_in, _ = _calculate_fan_in_and_fan_out(tensor)
    gain = math.sqrt(2.0 / (1 + a * a)) if nonlinearity == "leaky_relu" else math.sqrt(2.0)
    bound = gain * math.sqrt(3.0 / fan_in) if fan_in else 0.0
    return uniform_(tensor, -bound, bound)
