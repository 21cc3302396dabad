"""Functional forms of the layers, as ``torch.nn.functional``: each checks its arguments,
then applies one autograd Function (or a few Tensor operations).

Errors follow PyTorch's classes, in PyTorch's order: an argument of the wrong type is a
``TypeError`` before anything else is checked (PyTorch's argument parser runs first); then a
dimension out of range is an ``IndexError``; shapes, dtypes and values the op cannot take are
``ShapeError``, ``DtypeError`` and ``ArgumentError``, which are ``RuntimeError`` as in PyTorch and
``ValueError``/``TypeError`` as tilegrad raised before.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .. import dtypes, random
from ..ops import nn as N
from ..ops import random as R
from ..errors import ArgumentError, DeviceMismatchError, DtypeError, IndexRangeError, ShapeError
from ..tensor import Tensor
from . import _args as A
from . import loss as L
# Defined beside their modules, and torch.nn.functional's names here too.
from .activation import gelu, leaky_relu, sigmoid, tanh  # noqa: F401
from .loss import (binary_cross_entropy, binary_cross_entropy_with_logits, l1_loss,  # noqa: F401
                   mse_loss, nll_loss)
from .tensor_ops import avg_pool2d, one_hot, pad  # noqa: F401

_IntPair = int | tuple[int, int]   # a window's size, stride or padding: n or (h, w)


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``y = x @ weight.T + bias`` over the last dimension of ``input``.

    Args:
        input: at least 1-D, floating.
        weight: (out_features, in_features); or (in_features,) for an output of
            ``input.shape[:-1]`` (as PyTorch).
        bias: None, or a shape PyTorch's ``linear`` takes (``A.bias_target``): (out_features,)
            always, and others that broadcast.

    Shape: input (*, in_features), weight (out_features, in_features), bias (out_features,);
    output (*, out_features).
    """
    A.check_tensors("linear", input, weight, bias)
    if input.ndim == 0 or weight.ndim == 0:
        raise ShapeError(f"linear: both arguments need at least 1 dimension, got input of shape "
                         f"{input.shape} and weight of shape {weight.shape}")
    A.check_same("linear", input, weight, bias)
    if weight.ndim > 2 or input.shape[-1] != weight.shape[-1]:
        raise ShapeError(f"linear: input of shape {input.shape} does not match weight of shape "
                         f"{weight.shape} (expects input (*, {weight.shape[-1]}))")
    lead = input.shape[:-1]
    rows = int(np.prod(lead, dtype=np.int64))       # not -1: it cannot be inferred from 0 elements
    out_features = weight.shape[0] if weight.ndim == 2 else None
    target = None if bias is None else \
        A.bias_target(input.ndim, bias.shape, lead, rows, out_features)
    if bias is not None and (target is None or A.broadcast_shape(bias.shape, target) != target):
        raise ShapeError(f"linear: bias of shape {bias.shape} does not broadcast to {target} "
                         f"(input {input.shape}, weight {weight.shape})")
    if weight.ndim == 1:
        y = linear(input, weight.reshape(1, -1)).reshape(lead)
        return y if bias is None else y + bias
    fused = bias is not None and bias.shape == (out_features,)    # into the GEMM's epilogue
    flat = bias is not None and target == (rows, out_features)    # added to the 2-D product
    x2 = input.reshape(rows, input.shape[-1]) if input.ndim != 2 else input
    y = N.Linear.apply(x2, weight, bias if fused else None)
    if flat and not fused:
        y = y + bias
    y = y.reshape(lead + (out_features,)) if input.ndim != 2 else y
    return y + bias if bias is not None and not flat else y       # added to the output


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """``max(input, 0)`` elementwise; integer tensors too (not bool, as PyTorch). With
    ``inplace`` the result is written into ``input`` (PyTorch's in-place rules), which is
    returned."""
    A.check_tensors("relu", input)
    if input.dtype == dtypes.bool_:
        raise DtypeError("relu: boolean inputs are not supported")
    return input._inplace("relu_", input.relu) if inplace else input.relu()


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride: _IntPair = 1,
           padding: _IntPair = 0) -> Tensor:
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (no dilation or groups, and
    ``padding`` a number, not 'same' or 'valid').

    Args:
        input: (N, C, H, W), or (C, H, W) unbatched.
        weight: (F, C, KH, KW), F >= 1 and KH, KW >= 1.
        bias: (F,) or None.
        stride: an int >= 1 or a pair of them (height, width).
        padding: an int >= 0 or a pair of them: zeros added on both sides.

    Shape: output (N, F, Ho, Wo) ((F, Ho, Wo) unbatched) with
    ``Ho = (H + 2*padding - KH) // stride + 1``.
    """
    stride, padding = A.ints(stride, "stride", "conv2d"), A.ints(padding, "padding", "conv2d")
    A.check_tensors("conv2d", input, weight, bias)
    if input.ndim not in (3, 4):
        raise ShapeError(f"conv2d: expects a 3-D (unbatched) or 4-D (batched) input, got shape "
                         f"{input.shape}")
    stride, padding = A.two(stride, "stride", "conv2d"), A.two(padding, "padding", "conv2d")
    A.check_same("conv2d", input, weight, bias)
    if input.ndim == 3:
        out = conv2d(input.unsqueeze(0), weight, bias, stride, padding)
        return out.reshape(out.shape[1:])
    if min(stride) < 1 or min(padding) < 0:
        raise ArgumentError(f"conv2d: stride {stride} must be positive and padding {padding} "
                            f"non-negative")
    if weight.ndim != 4 or weight.shape[0] == 0 or input.shape[1] != weight.shape[1]:
        raise ShapeError(f"conv2d: input of shape {input.shape} does not match weight of shape "
                         f"{weight.shape} (expects input (N, C, H, W), weight (F, C, KH, KW), "
                         f"F >= 1)")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ShapeError(f"conv2d: bias of shape {bias.shape} does not match weight of shape "
                         f"{weight.shape}")
    if min(weight.shape[2:]) < 1:
        raise ArgumentError(f"conv2d: kernel size {weight.shape[2:]} must be positive")
    h, w = input.shape[2] + 2 * padding[0], input.shape[3] + 2 * padding[1]
    if h < weight.shape[2] or w < weight.shape[3]:
        raise ShapeError(f"conv2d: kernel {weight.shape[2:]} is larger than the padded input "
                         f"({h}, {w}) of input shape {input.shape}")
    if min(input.shape[2:]) == 0 and min(input.shape[:2]) > 0:
        # PyTorch convolves empty batches and zero channels, not empty images.
        raise ShapeError(f"conv2d: an input of shape {input.shape} has an empty image")
    return N.Conv2d.apply(input, weight, bias, stride, padding)


def max_pool2d(input: Tensor, kernel_size: _IntPair, stride: _IntPair | None = None,
               padding: _IntPair = 0) -> Tensor:
    """Maximum over each window, as ``torch.nn.functional.max_pool2d`` (no dilation, ceil_mode
    or return_indices).

    Args:
        input: (N, C, H, W), or (C, H, W) unbatched; C, H, W >= 1.
        kernel_size: an int >= 1 or a pair of them.
        stride: an int >= 1 or a pair of them; None (or ``()``) means ``kernel_size``.
        padding: an int or pair, at least 0 and at most half the kernel: -inf added on both
            sides.

    Shape: output (N, C, Ho, Wo), ``Ho = (H + 2*padding - KH) // stride + 1 >= 1``.
    """
    kernel = A.ints(kernel_size, "kernel_size", "max_pool2d")
    stride = () if stride is None else A.ints(stride, "stride", "max_pool2d")
    padding = A.ints(padding, "padding", "max_pool2d")
    A.check_tensors("max_pool2d", input)
    kernel = A.two(kernel, "kernel_size", "max_pool2d")
    stride = kernel if stride == () else A.two(stride, "stride", "max_pool2d")
    padding = A.two(padding, "padding", "max_pool2d")
    if input.ndim not in (3, 4):
        raise ShapeError(f"max_pool2d: expects a 3-D (unbatched) or 4-D (batched) input, got "
                         f"shape {input.shape}")
    A.check_same("max_pool2d", input)
    if input.ndim == 3:
        out = max_pool2d(input.unsqueeze(0), kernel, stride, padding)
        return out.reshape(out.shape[1:])
    if min(kernel) < 1 or min(stride) < 1 or min(padding) < 0 or \
            padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ArgumentError(f"max_pool2d: kernel {kernel} and stride {stride} must be positive "
                            f"and padding {padding} from 0 to half the kernel")
    if min(input.shape[1:]) == 0:
        raise ShapeError(f"max_pool2d: an input of shape {input.shape} is empty (only the batch "
                         f"may be)")
    if input.shape[2] + 2 * padding[0] < kernel[0] or input.shape[3] + 2 * padding[1] < kernel[1]:
        raise ShapeError(f"max_pool2d: kernel {kernel} is larger than the padded input of shape "
                         f"{input.shape}")
    return N.MaxPool2d.apply(input, kernel, stride, padding)


def flatten(input: Tensor, start_dim: int = 1, end_dim: int = -1) -> Tensor:
    """Dimensions ``start_dim`` to ``end_dim`` (inclusive) merged into one, as ``torch.flatten``
    (whose default ``start_dim`` is 0; this one's is 1, as ``nn.Flatten``'s). A 0-d tensor
    becomes 1-D.

    Shape: (*lead, d_start, ..., d_end, *rest) -> (*lead, d_start * ... * d_end, *rest).
    """
    A.check_tensors("flatten", input)
    s = A.dim(start_dim, input.ndim, "flatten", "start_dim")
    e = A.dim(end_dim, input.ndim, "flatten", "end_dim")
    if s > e:
        raise ArgumentError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a "
                            f"tensor of shape {input.shape}")
    if input.ndim == 0:
        return input.reshape(1)
    if s == e:
        return input
    merged = int(np.prod(input.shape[s:e + 1], dtype=np.int64))   # not -1: there may be 0 elements
    return input.reshape(input.shape[:s] + (merged,) + input.shape[e + 1:])


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` picked by the integers in ``input``.

    Args:
        input: int64 or int32 indices, each in [0, num_embeddings).
        weight: (num_embeddings, embedding_dim), floating.

    Shape: input (*) -> output (*, embedding_dim).

    An index out of range raises ``IndexRangeError`` (an ``IndexError``): at the call on "cpu";
    on a device whose kernels check indices (its backend's ``CHECKS_INDICES``, "cuda") at the
    next synchronisation (``.item()``, ``.numpy()``, ...), so that no call reads indices back.
    """
    A.check_tensors("embedding", input, weight)
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"shape {weight.shape}")
    if input.dtype not in (dtypes.int64, dtypes.int32):
        raise DtypeError(f"embedding: indices must be int64 or int32, got {input.dtype}")
    A.check_same("embedding", weight)
    if input.device != weight.device:
        raise DeviceMismatchError(f"embedding: indices on {input.device}, weight on "
                                  f"{weight.device}")
    if input.numel() and weight.shape[0] == 0:
        raise ShapeError(f"embedding: indices into a weight of no rows {weight.shape}")
    if input.numel() and not getattr(input.device.backend, "CHECKS_INDICES", False):
        idx = input.numpy()
        bad = idx[(idx < 0) | (idx >= weight.shape[0])]
        if bad.size:
            # PyTorch gathers rows of no columns another way, whose range error is a
            # RuntimeError (the CUDA kernel raises the same classes).
            error = IndexRangeError if weight.shape[1] else ArgumentError
            raise error(f"embedding: index {bad[0]} is out of range for a weight of "
                        f"{weight.shape[0]} rows")
    return N.Embedding.apply(weight, input.to(dtype=dtypes.int64))   # the kernels take int64


def lstm_cell(input: Tensor, hx: Sequence[Tensor], w_ih: Tensor, w_hh: Tensor,
              b_ih: Tensor | None = None, b_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One LSTM step: ``gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh`` (gates i, f, g, o), then
    ``c' = f*c + i*g``, ``h' = o*tanh(c')``. Returns ``(h', c')``, as ``torch.lstm_cell``.

    Args:
        input: (B, I); hx: the pair (h, c), each (B, H).
        w_ih: (4H, I); w_hh: (4H, H); b_ih, b_hh: (4H,) or None.
    """
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise ArgumentError("lstm_cell: hx must be the pair (h, c)")
    h, c = hx
    A.check_tensors("lstm_cell", input, h, c, w_ih, w_hh, b_ih, b_hh)
    A.check_lstm_shapes(input, h, c, w_ih, w_hh)
    A.check_same("lstm_cell", input, h, c, w_ih, w_hh, b_ih, b_hh)
    gates = linear(input, w_ih, b_ih) + linear(h, w_hh, b_hh)
    return lstm_cell_pointwise(gates, c)


def lstm_cell_pointwise(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The cell's activations and state update from its pre-activation gates: ``i, f, o`` the
    sigmoids and ``g`` the tanh of the four column blocks of ``gates``, ``c' = f*c + i*g``,
    ``h' = o*tanh(c')``. Returns ``(h', c')``.

    Shape: gates (B, 4H), c (B, H); h' and c' (B, H).
    """
    A.check_tensors("lstm_cell_pointwise", gates, c)
    if c.ndim != 2 or gates.shape != (c.shape[0], 4 * c.shape[1]):
        raise ShapeError(f"lstm_cell_pointwise: gates {gates.shape} and c {c.shape} do not match "
                         f"(expects (B, 4H) and (B, H))")
    A.check_same("lstm_cell_pointwise", gates, c)
    return N.LSTMCellPointwise.apply(gates, c)


def log_softmax(input: Tensor, dim: int = -1) -> Tensor:
    """``x - logsumexp(x)`` along ``dim``; as PyTorch, a 0-d tensor counts as one element (its
    result is 0) and an empty dimension gives an empty result.

    Args:
        input: floating, any shape.
        dim: the dimension to normalise over (no default inferred from the rank as PyTorch's
            deprecated ``dim=None``; -1 here).
    """
    A.check_tensors("log_softmax", input)
    dim = A.dim(dim, input.ndim, "log_softmax")
    A.check_same("log_softmax", input)
    if input.ndim == 0:
        return N.LogSoftmax.apply(input.reshape(1)).reshape(())
    if dim == input.ndim - 1:
        return N.LogSoftmax.apply(input)
    return N.LogSoftmax.apply(input.transpose(dim, -1)).transpose(dim, -1)


def softmax(input: Tensor, dim: int = -1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``dim``: the exponential of ``log_softmax`` (same Args)."""
    return log_softmax(input, dim).exp()


_REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                  size_average: bool | None = None, ignore_index: int = -100,
                  reduce: bool | None = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy between logits and class indices or class probabilities, as
    ``torch.nn.functional.cross_entropy``.

    Args:
        input: logits (N, C), (C,) unbatched, or (N, C, d1, ..., dk); floating.
        target: class indices of shape (N,), () or (1,) unbatched, or (N, d1, ..., dk), each
            in [0, C) or ``ignore_index``, int64 (or uint8 but for (N, C, d1, ...)); or class
            probabilities of the input's shape and dtype.
        weight: None, or (C,): a weight per class (the mean becomes the weighted mean
            ``sum(w[t_i] * l_i) / sum(w[t_i])`` for indices; for probabilities each term
            ``t_c * log p_c`` is weighted and the mean stays over rows).
        ignore_index: class-index targets of this value contribute nothing (for probabilities
            only a negative one is allowed, as PyTorch).
        reduction: ``'mean'`` (over all N*d1*...*dk losses; NaN when there are none, or when all
            are ignored), ``'sum'`` or ``'none'`` (the losses in the target's shape, the input's
            without C, for probabilities). ``size_average`` and ``reduce`` are PyTorch's
            deprecated spellings of it.
        label_smoothing: e in [0, 1]: the target becomes ``(1 - e) * target + e / C``.

    With indices ``loss = logsumexp(input[n, :]) - input[n, target[n]]``; with probabilities
    ``loss = -sum_c target[n, c] * log_softmax(input)[n, c]``. Without weight or label smoothing,
    class indices take one fused kernel (forward and backward), which skips the targets equal to
    ``ignore_index`` and counts the others for 'mean' on the device; with either, the loss is
    composed of Tensor ops (``nn.loss``).

    A class index out of range (and not ``ignore_index``) raises ``IndexRangeError`` (an
    ``IndexError``): at the call on "cpu"; on a device whose kernels check indices ("cuda") at
    the next synchronisation, the targets never being read back to the host.
    """
    reduction = L.reduction_of("cross_entropy", reduction, size_average, reduce)
    A.check_tensors("cross_entropy", input, weight)
    label_smoothing = L.check_label_smoothing(label_smoothing)
    if not A.is_int(ignore_index):
        raise TypeError(f"cross_entropy: ignore_index must be an int, got {ignore_index!r}")
    if not isinstance(target, Tensor):
        raise TypeError(f"cross_entropy: target must be a tensor, got {type(target).__name__}")
    if input.device != target.device:
        raise DeviceMismatchError(f"cross_entropy: input on {input.device}, target on "
                                  f"{target.device}")
    class_dim = 0 if input.ndim == 1 else 1
    plain = weight is None and label_smoothing == 0
    if input.shape == target.shape:
        if target.dtype not in dtypes.FLOATING:
            raise DtypeError(f"cross_entropy: a target of the input's shape {input.shape} holds "
                             f"class probabilities and must be floating, got {target.dtype}")
        if ignore_index >= 0:
            raise ArgumentError(f"cross_entropy: ignore_index ({ignore_index}) is not supported "
                                f"with class probabilities")
        if plain:
            return _cross_entropy_probabilities(input, target, class_dim, reduction)
        A.dim(class_dim, input.ndim, "cross_entropy")
        return L.cross_entropy_probabilities(input, target, weight, reduction, label_smoothing,
                                             class_dim)
    # As PyTorch: log_softmax first (a 0-d input has no class dimension: IndexError; an integer
    # one is a DtypeError), then the target's shape, dtype and values.
    A.dim(class_dim, input.ndim, "cross_entropy")
    A.check_same("cross_entropy", input)
    A.check_class_target(input, target)
    n_classes = input.shape[class_dim]
    L.check_targets_in_range("cross_entropy", target, n_classes, ignore_index)
    if not plain:
        return L.cross_entropy_general(input, target, weight, ignore_index, reduction,
                                       label_smoothing)
    # Rows of logits (M, C), the class dimension last, and their M int64 targets (the kernels'
    # layout).
    logits, flat_target, loss_shape = L.class_rows(input, target)
    # 'mean' of no rows, or of only ignored ones: 0/0 = NaN in the kernel, as PyTorch's.
    loss = N.CrossEntropy.apply(logits, flat_target, reduction, ignore_index)
    return loss.reshape(loss_shape) if reduction == "none" else loss


def _cross_entropy_probabilities(input, target, class_dim, reduction):
    """Cross-entropy with class probabilities (``target`` of the input's shape), in Tensor ops."""
    A.dim(class_dim, input.ndim, "cross_entropy")    # PyTorch's log_softmax checks it first
    A.check_same("cross_entropy", input, target)
    losses = -(target * log_softmax(input, class_dim)).sum(class_dim)
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    # PyTorch divides by the number of rows, N*d1*...*dk, and gives NaN when there are none.
    rows = input.numel() // input.shape[class_dim] if input.numel() else 0
    return total / rows if rows else total * math.nan


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p), when training.

    Args:
        input: a tensor; integer ones only where nothing is drawn (not training, p 0 or 1).
        p: the probability of zeroing, in [0, 1] (NaN is refused).
        training: apply dropout; otherwise return ``input`` itself.
    """
    A.check_probability(p, "dropout")
    A.check_tensors("dropout", input)
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0
    if input.dtype not in dtypes.FLOATING:
        raise DtypeError(f"dropout: a {input.dtype} tensor cannot be scaled by 1/(1-p)")
    # The mask is drawn on input's device from its counter generator, which the kernel advances:
    # no host work, so a captured CUDA graph draws a new mask at each replay.
    return R.Dropout.apply(input, float(p), random.device_state(input.device))


from ._norm import batch_norm, layer_norm  # noqa: E402,F401
