"""``batch_norm`` and ``layer_norm`` as ``torch.nn.functional`` has them (re-exported there).

Training-mode batch norm and layer norm are one fused autograd Function each (``ops.norm``): the
input is viewed as (N, C, L) or (M, D), normalised by one kernel, and its backward is one kernel
too. Eval-mode batch norm normalises with the running statistics, which are constants: it is an
affine map per channel, ``y = x * scale + shift`` with ``scale = weight / sqrt(running_var +
eps)`` and ``shift = bias - running_mean * scale`` (as PyTorch computes it on the CPU), made of
Tensor operations on C-sized tensors and two elementwise passes over the input, so that
autograd differentiates it.

Errors follow PyTorch's classes and order: wrong types (TypeError) first, then shapes
(ShapeError, a RuntimeError), then the batch-size check (ValueError).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from .._checks import is_int
from ..errors import ArgumentError, ShapeError
from ..ops import norm as N
from ..tensor import Tensor
from . import _args as A


def _number(value, name, op):
    """A real number (not a bool or None) as a float, else a TypeError naming ``op``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a float, got {value!r}")
    return float(value)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation over every dimension but the channels (dimension 1).

    Training: each channel is normalised with the batch's mean and biased variance, and
    running_mean and running_var (if given) are updated in place:
    ``running = (1 - momentum) * running + momentum * batch_stat`` (the variance's stat
    unbiased). Not training: normalised with running_mean and running_var.

    Args:
        input: (N, C, *), floating.
        running_mean, running_var: (C,) or None (required when not training).
        weight, bias: (C,) or None (1 and 0).
        training: use batch statistics (and update the running ones).
        momentum: the running statistics' update factor.
        eps: added to the variance.
    """
    op = "batch_norm"
    A.check_tensors(op, input, running_mean, running_var, weight, bias)
    momentum, eps = _number(momentum, "momentum", op), _number(eps, "eps", op)
    if input.ndim < 2:
        raise IndexError(f"{op}: expects an input of at least 2 dimensions (N, C, *), got shape "
                         f"{input.shape}")
    A.check_same(op, input, running_mean, running_var, weight, bias)
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and t.shape != (c,):
            raise ShapeError(f"{op}: {name} should contain {c} elements not {t.numel()} (one "
                             f"per channel of the input of shape {input.shape}; {name} has shape "
                             f"{t.shape})")
    if not training:
        if running_mean is None or running_var is None:
            raise ArgumentError(f"{op}: running_mean and running_var must be defined in "
                                f"evaluation mode")
        return _batch_norm_eval(input, running_mean, running_var, weight, bias, eps)
    n, span = input.shape[0], math.prod(input.shape[2:])
    if n * span == 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got "
                         f"input of shape {input.shape}")
    # The running statistics go in as arrays, updated in place by the kernel (no graph); not
    # for an empty batch, which has no statistics.
    update = running_mean is not None and running_var is not None and n * span > 0
    rm = running_mean._data if update else None
    rv = running_var._data if update else None
    y = N.BatchNorm.apply(input.reshape(n, c, span), weight, bias, rm, rv, momentum, eps)
    if update:
        running_mean._version_counter.bump(op)
        running_var._version_counter.bump(op)
    return y.reshape(input.shape)


def _batch_norm_eval(input, running_mean, running_var, weight, bias, eps):
    """``input * scale + shift`` per channel, from the running statistics (see the module
    docstring)."""
    scale = (running_var + eps) ** -0.5
    if weight is not None:
        scale = scale * weight
    shift = -(running_mean * scale)
    if bias is not None:
        shift = shift + bias
    shape = (1, input.shape[1]) + (1,) * (input.ndim - 2)
    return input * scale.reshape(shape) + shift.reshape(shape)


def _normalized_shape(normalized_shape, op):
    if is_int(normalized_shape):
        return (int(normalized_shape),)
    if isinstance(normalized_shape, Sequence) and all(is_int(n) for n in normalized_shape):
        return tuple(int(n) for n in normalized_shape)
    raise TypeError(f"{op}: normalized_shape must be an int or a sequence of ints, got "
                    f"{normalized_shape!r}")


def layer_norm(input: Tensor, normalized_shape: int | Sequence[int],
               weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Layer normalisation over the last ``len(normalized_shape)`` dimensions: each slice is
    normalised with its own mean and biased variance, then ``* weight + bias``.

    Args:
        input: (*, *normalized_shape), floating.
        normalized_shape: the trailing shape normalised over (an int for one dimension).
        weight, bias: of shape normalized_shape, or None (1 and 0).
        eps: added to the variance.
    """
    op = "layer_norm"
    shape = _normalized_shape(normalized_shape, op)
    A.check_tensors(op, input, weight, bias)
    eps = _number(eps, "eps", op)
    if not shape:
        raise ArgumentError(f"{op}: expected normalized_shape to be at least 1-dimensional, "
                            f"got {shape}")
    k = len(shape)
    if input.ndim < k or input.shape[input.ndim - k:] != shape:
        raise ShapeError(f"{op}: given normalized_shape={list(shape)}, expected input with shape "
                         f"[*, {', '.join(map(str, shape))}], but got input of shape "
                         f"{input.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.shape != shape:
            raise ShapeError(f"{op}: expected {name} to be of the same shape as "
                             f"normalized_shape {shape}, got {name} of shape {t.shape}")
    A.check_same(op, input, weight, bias)
    d = math.prod(shape)
    m = math.prod(input.shape[:input.ndim - k])
    weight = weight if weight is None or k == 1 else weight.reshape(d)
    bias = bias if bias is None or k == 1 else bias.reshape(d)
    y = N.LayerNorm.apply(input.reshape(m, d), weight, bias, eps)
    return y.reshape(input.shape)
