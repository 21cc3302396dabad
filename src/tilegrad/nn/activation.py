"""Activations under torch.nn's names: the functions ``gelu``, ``tanh``, ``sigmoid`` and
``leaky_relu`` (``nn.functional`` re-exports them) and the modules ``Identity``, ``Tanh``,
``Sigmoid``, ``GELU``, ``Softmax``, ``LogSoftmax`` and ``LeakyReLU``.

GELU's default is PyTorch's exact form, ``x * Phi(x)`` with the normal CDF written with erf (a
backend primitive, so the result matches PyTorch's to rounding); ``approximate='tanh'`` is the
tanh formula, composed of existing ops.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from .. import dtypes
from ..errors import DtypeError
from ..ops import activation as Act
from ..tensor import Tensor
from . import _args as A
from . import functional as F    # softmax, log_softmax and relu; read at call time
from .module import Module

_SQRT_HALF = math.sqrt(0.5)
_SQRT_TWO_OVER_PI = math.sqrt(2 / math.pi)


def _floating(op, input):
    A.check_tensors(op, input)
    if input.dtype not in dtypes.FLOATING:
        raise DtypeError(f"{op}: expects a floating-point input, got {input.dtype}")


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """``x * Phi(x)``, Phi the standard normal CDF: ``0.5 * x * (1 + erf(x / sqrt(2)))``; with
    ``approximate='tanh'``, ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    _floating("gelu", input)
    if approximate == "tanh":
        inner = (input + input * input * input * 0.044715) * _SQRT_TWO_OVER_PI
        return input * 0.5 * (inner.tanh() + 1)
    return input * 0.5 * (Act.Erf.apply(input * _SQRT_HALF) + 1)


def tanh(input: Tensor) -> Tensor:
    """The hyperbolic tangent, elementwise (integer inputs become the default float dtype)."""
    A.check_tensors("tanh", input)
    return input.tanh()


def sigmoid(input: Tensor) -> Tensor:
    """``1 / (1 + exp(-x))``, elementwise (integer inputs become the default float dtype)."""
    A.check_tensors("sigmoid", input)
    return input.sigmoid()


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """``x`` where ``x > 0``, else ``negative_slope * x``. With ``inplace`` the result is written
    into ``input`` (PyTorch's rules for in-place operations) and ``input`` returned."""
    if isinstance(negative_slope, (bool, np.bool_)) or \
            not isinstance(negative_slope, numbers.Real):
        raise TypeError(f"leaky_relu: negative_slope must be a number, got {negative_slope!r}")
    _floating("leaky_relu", input)
    if inplace:
        return input._inplace("leaky_relu_",
                              lambda: Act.LeakyReLU.apply(input, float(negative_slope)))
    return Act.LeakyReLU.apply(input, float(negative_slope))


class Identity(Module):
    """Returns its input; takes (and ignores) any constructor arguments, as PyTorch's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Tanh(Module):
    """``F.tanh`` as a module."""

    def forward(self, input: Tensor) -> Tensor:
        return tanh(input)


class Sigmoid(Module):
    """``F.sigmoid`` as a module."""

    def forward(self, input: Tensor) -> Tensor:
        return sigmoid(input)


class GELU(Module):
    """``F.gelu``. Args: approximate, 'none' (the erf form, default) or 'tanh'."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class _AlongDim(Module):
    """A normalisation along ``dim``. PyTorch's deprecated ``dim=None`` picks it from the rank
    (0 for 0-, 1- and 3-d inputs, else 1) with a warning, as here."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and not A.is_int(dim):
            raise TypeError(f"{type(self).__name__}: dim must be an int or None, got {dim!r}")
        self.dim = dim

    def _dim(self, input):
        if self.dim is not None:
            return self.dim
        warnings.warn(f"{type(self).__name__}: implicit dimension choice (dim=None) is "
                      f"deprecated, as in PyTorch; pass dim", UserWarning, stacklevel=3)
        return 0 if input.ndim in (0, 1, 3) else 1

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    """``F.softmax(input, dim)``: along ``dim`` the values are positive and sum to 1."""

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self._dim(input))


class LogSoftmax(_AlongDim):
    """``F.log_softmax(input, dim)``."""

    def forward(self, input: Tensor) -> Tensor:
        return F.log_softmax(input, self._dim(input))


class LeakyReLU(Module):
    """``F.leaky_relu``. Args: negative_slope=0.01, inplace=False."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input: Tensor) -> Tensor:
        return leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")
