"""Normalisation layers with PyTorch's arguments, parameters, buffers and behaviour:
``BatchNorm1d``, ``BatchNorm2d`` and ``LayerNorm``.

Batch norm keeps three buffers (in ``state_dict`` under torch's names): ``running_mean`` (zeros),
``running_var`` (ones) and ``num_batches_tracked`` (int64). In training mode it normalises with
the batch's statistics and updates the running ones (``momentum``, or a cumulative average when
``momentum`` is None); in eval mode it normalises with the running ones, unless
``track_running_stats=False``, where it always uses the batch's.
"""
from __future__ import annotations

import numpy.typing as npt

from .._checks import is_int
from ..creation import ones, tensor, zeros
from ..dtypes import int64
from ..errors import ArgumentError
from ..tensor import Tensor, _DeviceLike
from . import _args as A
from . import _norm as F
from .module import Module, Parameter


def _affine_parameters(module, affine, bias, shape, device, dtype):
    """``weight`` (ones) and ``bias`` (zeros, unless ``bias`` is False) of ``shape``, or None for
    both without ``affine``: the learnt scale and shift of a normalisation layer."""
    weight = Parameter(ones(shape, device=device, dtype=dtype)) if affine else None
    module.register_parameter("weight", weight)
    module.register_parameter(
        "bias", Parameter(zeros(shape, device=device, dtype=dtype)) if affine and bias else None)


class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share; they differ in the input dimensions they take."""
    _dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 device: _DeviceLike = None, dtype: npt.DTypeLike | None = None, *,
                 bias: bool = True) -> None:
        super().__init__()
        layer = type(self).__name__
        if not is_int(num_features):
            raise TypeError(f"{layer}: num_features must be an int, got {num_features!r}")
        if num_features < 0:
            raise ArgumentError(f"{layer}: num_features must be at least 0, got {num_features}")
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        shape = (self.num_features,)
        _affine_parameters(self, affine, bias, shape, device, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(shape, device=device, dtype=dtype))
            self.register_buffer("running_var", ones(shape, device=device, dtype=dtype))
            self.register_buffer("num_batches_tracked", tensor(0, dtype=int64, device=device))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def _check_input_dim(self, input: Tensor) -> None:
        A.check_tensors(type(self).__name__, input)
        if input.ndim not in self._dims:
            want = " or ".join(f"{d}D" for d in self._dims)
            raise ValueError(f"{type(self).__name__}: expected {want} input (got {input.ndim}D "
                             f"input of shape {input.shape})")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:       # cumulative average: a host read of the count
                factor = 1.0 / float(self.num_batches_tracked.item())
        # Batch statistics in training, and in eval when there are no running ones.
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(input, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            use_batch, factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) input over N (and L), per channel C.

    Args: num_features (C), eps=1e-5, momentum=0.1 (None: cumulative average), affine=True
    (``weight`` ones and ``bias`` zeros, (C,)), track_running_stats=True, device, dtype; bias=True
    (keyword only: no ``bias`` parameter when False).
    """
    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) input over N, H and W, per channel C. Arguments as
    ``BatchNorm1d``."""
    _dims = (4,)


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` of the input.

    Args: normalized_shape (an int or a tuple), eps=1e-5, elementwise_affine=True (``weight``
    ones and ``bias`` zeros, of shape normalized_shape), bias=True, device, dtype.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...] | list[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, device: _DeviceLike = None,
                 dtype: npt.DTypeLike | None = None) -> None:
        super().__init__()
        self.normalized_shape = F._normalized_shape(normalized_shape, "LayerNorm")
        self.eps, self.elementwise_affine = eps, elementwise_affine
        shape = self.normalized_shape
        _affine_parameters(self, elementwise_affine, bias, shape, device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")
