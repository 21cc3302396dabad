"""Layers with PyTorch's constructor arguments, parameter names, layouts and initialisation."""
from __future__ import annotations

import collections
import math

import numpy.typing as npt

from ..creation import zeros
from ..errors import ArgumentError
from ..tensor import Tensor, _DeviceLike
from . import _args as A
from . import functional as F
from . import init
from . import loss as L
from .container import _IndexedModules
from .module import Module, Parameter

_IntPair = int | tuple[int, int]   # a window's size, stride or padding: n or (h, w)


def _param(shape, device, dtype):
    return Parameter(zeros(shape, device=device, dtype=dtype))


def _size(value, name, layer, least=0):
    """A size argument: an int (not a bool: TypeError) of at least ``least`` (ArgumentError, a
    ValueError, and the RuntimeError PyTorch raises when it makes a tensor of negative size)."""
    if not A.is_int(value):
        raise TypeError(f"{layer}: {name} must be an int, got {value!r}")
    if value < least:
        raise ArgumentError(f"{layer}: {name} must be at least {least}, got {value}")
    return int(value)


def _window(kernel_size, stride, padding, layer):
    """Kernel size, stride and padding of a 2-D window as (h, w) pairs, checked: ints (or pairs)
    (TypeError), the kernel and stride at least 1 and the padding at least 0 (ArgumentError).
    PyTorch takes zero and negative values here and fails only in forward (or, for a zero
    kernel in Conv2d, returns an output larger than its input)."""
    kernel = A.pair(kernel_size, "kernel_size", layer)
    stride = kernel if stride is None else A.pair(stride, "stride", layer)
    padding = A.pair(padding, "padding", layer)
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0:
        raise ArgumentError(f"{layer}: kernel_size {kernel} and stride {stride} must be positive, "
                            f"padding {padding} non-negative")
    return kernel, stride, padding


def _init_bias_from_fan_in(bias, fan_in):
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
    init.uniform_(bias, -bound, bound)


class Linear(Module):
    """``y = x @ weight.T + bias``.

    Args: in_features, out_features, bias (default True), device, dtype.
    Shape: input (*, in_features), output (*, out_features); ``weight`` is (out_features,
    in_features), ``bias`` (out_features,), both U(-1/sqrt(in), 1/sqrt(in)) initially.

    >>> m = Linear(20, 30); m(tilegrad.randn(128, 20)).shape
    (128, 30)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: _DeviceLike = None, dtype: npt.DTypeLike | None = None) -> None:
        super().__init__()
        in_features = _size(in_features, "in_features", "Linear")
        out_features = _size(out_features, "out_features", "Linear")
        self.in_features, self.out_features = in_features, out_features
        self.weight = _param((out_features, in_features), device, dtype)
        self.register_parameter("bias", _param((out_features,), device, dtype) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            _init_bias_from_fan_in(self.bias, self.in_features)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Conv2d(Module):
    """2-D convolution (cross-correlation) with ``weight`` (out, in, KH, KW) and ``bias`` (out,).

    Args: in_channels, out_channels (ints >= 0), kernel_size and stride (an int >= 1 or a pair),
    padding (an int >= 0 or a pair), bias=True, device, dtype.
    Shape: (N, in, H, W) -> (N, out, Ho, Wo), ``Ho = (H + 2*padding - KH) // stride + 1``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: _IntPair,
                 stride: _IntPair = 1, padding: _IntPair = 0, bias: bool = True,
                 device: _DeviceLike = None, dtype: npt.DTypeLike | None = None) -> None:
        super().__init__()
        self.in_channels = _size(in_channels, "in_channels", "Conv2d")
        self.out_channels = _size(out_channels, "out_channels", "Conv2d")
        self.kernel_size, self.stride, self.padding = _window(kernel_size, stride, padding,
                                                              "Conv2d")
        self.weight = _param((out_channels, in_channels) + self.kernel_size, device, dtype)
        self.register_parameter("bias", _param((out_channels,), device, dtype) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            _init_bias_from_fan_in(self.bias, init._calculate_fan_in_and_fan_out(self.weight)[0])

    def forward(self, input: Tensor) -> Tensor:
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        return s + ("" if self.bias is not None else ", bias=False")


class MaxPool2d(Module):
    """Maximum over each window: ``F.max_pool2d``.

    Args: kernel_size and stride (an int >= 1 or a pair; stride defaults to kernel_size),
    padding (an int or a pair, from 0 to half the kernel). Kept as given (for the repr).
    """

    def __init__(self, kernel_size: _IntPair, stride: _IntPair | None = None,
                 padding: _IntPair = 0) -> None:
        super().__init__()
        kernel, _, pad = _window(kernel_size, stride, padding, "MaxPool2d")
        if pad[0] * 2 > kernel[0] or pad[1] * 2 > kernel[1]:
            raise ArgumentError(
                f"MaxPool2d: padding {pad} must be at most half the kernel {kernel}")
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, input: Tensor) -> Tensor:
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class ReLU(Module):
    """``F.relu``. Args: inplace=False (write the result into the input)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class AvgPool2d(Module):
    """Mean over each window: ``F.avg_pool2d``. Args: kernel_size, stride=None (kernel_size),
    padding=0, ceil_mode=False (only), count_include_pad=True, divisor_override=None."""

    def __init__(self, kernel_size: _IntPair, stride: _IntPair | None = None,
                 padding: _IntPair = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None) -> None:
        super().__init__()
        _window(kernel_size, stride, padding, "AvgPool2d")
        if ceil_mode:
            raise NotImplementedError("AvgPool2d: ceil_mode=True is not supported")
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Flatten(Module):
    """``F.flatten(input, start_dim, end_dim)``: dimensions start_dim to end_dim (ints) merged."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        for name, d in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not A.is_int(d):
                raise TypeError(f"Flatten: {name} must be an int, got {d!r}")
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input: Tensor) -> Tensor:
        return F.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """``F.dropout`` in training mode, the identity in eval mode.

    Args: p, the probability of zeroing an element, in [0, 1] (NaN refused).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        A.check_probability(p, "Dropout")
        self.p = p

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Embedding(Module):
    """A lookup table: ``weight`` (num_embeddings, embedding_dim), N(0, 1) initially.

    Args: num_embeddings, embedding_dim (ints >= 0), device, dtype.
    Shape: integer indices (*) -> (*, embedding_dim).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, device: _DeviceLike = None,
                 dtype: npt.DTypeLike | None = None) -> None:
        super().__init__()
        num_embeddings = _size(num_embeddings, "num_embeddings", "Embedding")
        embedding_dim = _size(embedding_dim, "embedding_dim", "Embedding")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = _param((num_embeddings, embedding_dim), device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.weight)

    def forward(self, input: Tensor) -> Tensor:
        return F.embedding(input, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class CrossEntropyLoss(Module):
    """``F.cross_entropy``. Args: weight=None (a (C,) tensor, kept as a buffer as PyTorch's:
    in the state dict, moved by ``to()``), size_average and reduce (deprecated), ignore_index=-100,
    reduction 'mean', 'sum' or 'none' (checked here, not in the first forward as PyTorch),
    label_smoothing=0.0."""

    def __init__(self, weight: Tensor | None = None, size_average: bool | None = None,
                 ignore_index: int = -100, reduce: bool | None = None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        if weight is not None and not isinstance(weight, Tensor):
            raise TypeError(f"CrossEntropyLoss: weight must be a tensor or None, got "
                            f"{type(weight).__name__}")
        self.reduction = L.reduction_of("CrossEntropyLoss", reduction, size_average, reduce)
        self.label_smoothing = L.check_label_smoothing(label_smoothing)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class Sequential(_IndexedModules):
    """Modules applied one after another; children are named "0", "1", ... or, given one
    OrderedDict, by its keys. Also a list of modules (append, insert, extend, pop, indexing,
    del), as torch's; a slice keeps the children's names."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], collections.OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
            return
        for k, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {k} is a {type(m).__name__}, not a Module")
            setattr(self, str(k), m)

    def _sliced(self, items: list[tuple[str, Module]]) -> Sequential:
        return Sequential(collections.OrderedDict(items))

    def forward(self, input: Tensor) -> Tensor:
        for m in self._modules.values():
            input = m(input)
        return input

    def insert(self, index: int, module: Module) -> Sequential:
        """Put ``module`` before position ``index``; returns the Sequential (as torch's)."""
        if not -len(self) <= index <= len(self):
            raise IndexError(f"Sequential.insert: index {index} is out of range for length "
                             f"{len(self)}")
        super().insert(index, module)
        return self

    def __add__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise ValueError(f"Sequential: add operator supports only objects of Sequential "
                             f"class, but {type(other).__name__} is given.")
        return Sequential(*self, *other)
