"""Functional forms of the layers, as ``torch.nn.functional``: each checks its arguments,
then applies one autograd Function (or a few Tensor operations).

Errors follow PyTorch's classes, in PyTorch's order: an argument of the wrong type is a
``TypeError`` before anything else is checked (PyTorch's argument parser runs first); then a
dimension out of range is an ``IndexError``; shapes, dtypes and values the op cannot take are
``ShapeError``, ``DtypeError`` and ``ArgumentError``, which are ``RuntimeError`` as in PyTorch and
``ValueError``/``TypeError`` as tilegrad raised before.
"""
import math
import numbers

import numpy as np

from .. import dtypes, random
from ..ops import nn as N
from ..creation import tensor
from ..errors import ArgumentError, DeviceMismatchError, DtypeError, IndexRangeError, ShapeError
from ..tensor import Tensor


def _is_int(v):
    """A Python or NumPy integer, not a bool (PyTorch's argument parser refuses bools for ints)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _ints(v, name, op):
    """``v`` (an int or a sequence of ints) as a tuple of ints, or a TypeError naming ``op`` and
    ``name``. Only the types: how many values there must be is the caller's check, made after
    every argument's type (PyTorch parses all arguments first)."""
    if _is_int(v):
        return (int(v),)
    if isinstance(v, (tuple, list)) and all(_is_int(n) for n in v):
        return tuple(int(n) for n in v)
    raise TypeError(f"{op}: {name} must be an int or a tuple of ints, got {v!r}")


def _two(v, name, op):
    """A tuple from ``_ints`` as the (height, width) pair: one value serves both."""
    if len(v) not in (1, 2):
        raise ArgumentError(f"{op}: {name} must be a single int or a pair of ints, got {v}")
    return (v[0], v[-1])


def _pair(v, name, op):
    """``v`` (an int or a sequence of one or two ints) as a (height, width) pair of ints."""
    return _two(_ints(v, name, op), name, op)


def _dim(dim, ndim, op, name="dim"):
    """``dim`` in [0, ndim), negatives counting from the end; as PyTorch, a 0-d tensor takes
    0 and -1. A non-integer is a TypeError, one out of range an IndexError."""
    if not _is_int(dim):
        raise TypeError(f"{op}: {name} must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: {name} {dim} is out of range for a tensor of {ndim} dimensions "
                         f"(expects one in [{-n}, {n - 1}])")
    return int(dim) % n


def _check_tensors(op, *tensors):
    """Every argument (None skipped) is a Tensor, or a TypeError naming ``op``."""
    for t in tensors:
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op}: expects tensors, got {type(t).__name__}")


def _check_same(op, *tensors):
    """Every tensor (None skipped) on one device, with one floating dtype."""
    _check_tensors(op, *tensors)
    ts = [t for t in tensors if t is not None]
    first = ts[0]
    if first.dtype not in dtypes.FLOATING:
        raise DtypeError(f"{op}: expects a floating-point input, got {first.dtype}")
    for t in ts[1:]:
        if t.device != first.device:
            raise DeviceMismatchError(f"{op}: tensors are on different devices ({first.device} "
                                      f"and {t.device})")
        if t.dtype != first.dtype:
            raise DtypeError(f"{op}: dtype mismatch ({first.dtype} and {t.dtype})")


def linear(input, weight, bias=None):
    """``y = x @ weight.T + bias`` over the last dimension of ``input``.

    Args:
        input: at least 1-D, floating.
        weight: (out_features, in_features); or (in_features,) for an output of
            ``input.shape[:-1]`` (as PyTorch).
        bias: None, or a shape PyTorch's ``linear`` takes (``_bias_target``): (out_features,)
            always, and others that broadcast.

    Shape: input (*, in_features), weight (out_features, in_features), bias (out_features,);
    output (*, out_features).
    """
    _check_tensors("linear", input, weight, bias)
    if input.ndim == 0 or weight.ndim == 0:
        raise ShapeError(f"linear: both arguments need at least 1 dimension, got input of shape "
                         f"{input.shape} and weight of shape {weight.shape}")
    _check_same("linear", input, weight, bias)
    if weight.ndim > 2 or input.shape[-1] != weight.shape[-1]:
        raise ShapeError(f"linear: input of shape {input.shape} does not match weight of shape "
                         f"{weight.shape} (expects input (*, {weight.shape[-1]}))")
    lead = input.shape[:-1]
    rows = int(np.prod(lead, dtype=np.int64))       # not -1: it cannot be inferred from 0 elements
    out_features = weight.shape[0] if weight.ndim == 2 else None
    target = None if bias is None else \
        _bias_target(input.ndim, bias.shape, lead, rows, out_features)
    if bias is not None and (target is None or _broadcast_shape(bias.shape, target) != target):
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


def _bias_target(input_ndim, bias_shape, lead, rows, out_features):
    """The shape PyTorch's ``linear`` broadcasts ``bias`` to, without enlarging it: with a 2-D
    input, or a bias of one dimension that is not 1, it flattens the input to (rows,
    in_features) and adds the bias in ``addmm`` (rows, out_features); other biases it adds to
    the output, (*lead, out_features). ``addmm`` takes no 1-D weight (``out_features`` None):
    None, no shape, then."""
    fused = input_ndim == 2 or len(bias_shape) == 1 or sum(n != 1 for n in bias_shape) == 1
    if out_features is None:
        return None if fused else lead
    return (rows, out_features) if fused else lead + (out_features,)


def _broadcast_shape(*shapes):
    """The shape ``shapes`` broadcast to, or None where they do not."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None


def relu(input):
    """``max(input, 0)`` elementwise; integer tensors too (not bool, as PyTorch)."""
    _check_tensors("relu", input)
    if input.dtype == dtypes.bool_:
        raise DtypeError("relu: boolean inputs are not supported")
    return input.relu()


def conv2d(input, weight, bias=None, stride=1, padding=0):
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
    stride, padding = _ints(stride, "stride", "conv2d"), _ints(padding, "padding", "conv2d")
    _check_tensors("conv2d", input, weight, bias)
    if input.ndim not in (3, 4):
        raise ShapeError(f"conv2d: expects a 3-D (unbatched) or 4-D (batched) input, got shape "
                         f"{input.shape}")
    stride, padding = _two(stride, "stride", "conv2d"), _two(padding, "padding", "conv2d")
    _check_same("conv2d", input, weight, bias)
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


def max_pool2d(input, kernel_size, stride=None, padding=0):
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
    kernel = _ints(kernel_size, "kernel_size", "max_pool2d")
    stride = () if stride is None else _ints(stride, "stride", "max_pool2d")
    padding = _ints(padding, "padding", "max_pool2d")
    _check_tensors("max_pool2d", input)
    kernel = _two(kernel, "kernel_size", "max_pool2d")
    stride = kernel if stride == () else _two(stride, "stride", "max_pool2d")
    padding = _two(padding, "padding", "max_pool2d")
    if input.ndim not in (3, 4):
        raise ShapeError(f"max_pool2d: expects a 3-D (unbatched) or 4-D (batched) input, got "
                         f"shape {input.shape}")
    _check_same("max_pool2d", input)
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


def flatten(input, start_dim=1, end_dim=-1):
    """Dimensions ``start_dim`` to ``end_dim`` (inclusive) merged into one, as ``torch.flatten``
    (whose default ``start_dim`` is 0; this one's is 1, as ``nn.Flatten``'s). A 0-d tensor
    becomes 1-D.

    Shape: (*lead, d_start, ..., d_end, *rest) -> (*lead, d_start * ... * d_end, *rest).
    """
    _check_tensors("flatten", input)
    s = _dim(start_dim, input.ndim, "flatten", "start_dim")
    e = _dim(end_dim, input.ndim, "flatten", "end_dim")
    if s > e:
        raise ArgumentError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for a "
                            f"tensor of shape {input.shape}")
    if input.ndim == 0:
        return input.reshape(1)
    if s == e:
        return input
    merged = int(np.prod(input.shape[s:e + 1], dtype=np.int64))   # not -1: there may be 0 elements
    return input.reshape(input.shape[:s] + (merged,) + input.shape[e + 1:])


def embedding(input, weight):
    """Rows of ``weight`` picked by the integers in ``input``.

    Args:
        input: int64 or int32 indices, each in [0, num_embeddings).
        weight: (num_embeddings, embedding_dim), floating.

    Shape: input (*) -> output (*, embedding_dim).
    """
    _check_tensors("embedding", input, weight)
    if weight.ndim != 2:
        raise ShapeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"shape {weight.shape}")
    if input.dtype not in (dtypes.int64, dtypes.int32):
        raise DtypeError(f"embedding: indices must be int64 or int32, got {input.dtype}")
    _check_same("embedding", weight)
    if input.device != weight.device:
        raise DeviceMismatchError(f"embedding: indices on {input.device}, weight on "
                                  f"{weight.device}")
    idx = input.numpy()
    if idx.size and weight.shape[0] == 0:
        raise ShapeError(f"embedding: indices into a weight of no rows {weight.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        # PyTorch gathers rows of no columns another way, whose range error is a RuntimeError.
        error = IndexRangeError if weight.shape[1] else ArgumentError
        raise error(f"embedding: index out of range: indices span [{idx.min()}, {idx.max()}] "
                    f"for a weight of {weight.shape[0]} rows")
    return N.Embedding.apply(weight, input.to(dtype=dtypes.int64))   # the kernels take int64


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: ``gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh`` (gates i, f, g, o), then
    ``c' = f*c + i*g``, ``h' = o*tanh(c')``. Returns ``(h', c')``, as ``torch.lstm_cell``.

    Args:
        input: (B, I); hx: the pair (h, c), each (B, H).
        w_ih: (4H, I); w_hh: (4H, H); b_ih, b_hh: (4H,) or None.
    """
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise ArgumentError("lstm_cell: hx must be the pair (h, c)")
    h, c = hx
    _check_tensors("lstm_cell", input, h, c, w_ih, w_hh, b_ih, b_hh)
    _check_lstm_shapes(input, h, c, w_ih, w_hh)
    _check_same("lstm_cell", input, h, c, w_ih, w_hh, b_ih, b_hh)
    gates = linear(input, w_ih, b_ih) + linear(h, w_hh, b_hh)
    return lstm_cell_pointwise(gates, c)


def _size(t, d, name):
    """PyTorch's ``t.size(d)`` for d in (0, 1): an IndexError where ``t`` has no dimension d."""
    if t.ndim <= d:
        raise IndexError(f"lstm_cell: {name} of shape {t.shape} has no dimension {d}")
    return t.shape[d]


def _check_lstm_shapes(input, h, c, w_ih, w_hh):
    """input (B, I), h and c (B, H), w_ih (4H, I), w_hh (4H, H), checked in PyTorch's order, so
    that the first mismatch has its class: sizes are read one by one (IndexError where a tensor
    lacks the dimension), then compared (ShapeError)."""
    def mismatch(what):
        return ShapeError(f"lstm_cell: {what} (input {input.shape}, h {h.shape}, c {c.shape}, "
                          f"w_ih {w_ih.shape}, w_hh {w_hh.shape}; expects (B, I), (B, H), (B, H), "
                          f"(4H, I), (4H, H))")
    n_in = _size(w_ih, 1, "w_ih")
    if _size(input, 1, "input") != n_in:
        raise mismatch("the input size differs from w_ih's")
    hidden = _size(w_hh, 1, "w_hh")
    for name, t in (("h", h), ("c", c)):
        if _size(input, 0, "input") != _size(t, 0, name):
            raise mismatch(f"the batch sizes of input and {name} differ")
        if _size(t, 1, name) != hidden:
            raise mismatch(f"the hidden size of {name} differs from w_hh's")
    if w_ih.shape[0] != 4 * hidden or w_hh.shape[0] != 4 * hidden:
        raise mismatch("the weights do not have 4 * hidden rows")
    if not input.ndim == h.ndim == c.ndim == w_ih.ndim == w_hh.ndim == 2:
        raise mismatch("tensors of more than 2 dimensions")


def lstm_cell_pointwise(gates, c):
    """The cell's activations and state update from its pre-activation gates: ``i, f, o`` the
    sigmoids and ``g`` the tanh of the four column blocks of ``gates``, ``c' = f*c + i*g``,
    ``h' = o*tanh(c')``. Returns ``(h', c')``.

    Shape: gates (B, 4H), c (B, H); h' and c' (B, H).
    """
    _check_tensors("lstm_cell_pointwise", gates, c)
    if c.ndim != 2 or gates.shape != (c.shape[0], 4 * c.shape[1]):
        raise ShapeError(f"lstm_cell_pointwise: gates {gates.shape} and c {c.shape} do not match "
                         f"(expects (B, 4H) and (B, H))")
    _check_same("lstm_cell_pointwise", gates, c)
    return N.LSTMCellPointwise.apply(gates, c)


def log_softmax(input, dim=-1):
    """``x - logsumexp(x)`` along ``dim``; as PyTorch, a 0-d tensor counts as one element (its
    result is 0) and an empty dimension gives an empty result.

    Args:
        input: floating, any shape.
        dim: the dimension to normalise over (no default inferred from the rank as PyTorch's
            deprecated ``dim=None``; -1 here).
    """
    _check_tensors("log_softmax", input)
    dim = _dim(dim, input.ndim, "log_softmax")
    _check_same("log_softmax", input)
    if input.ndim == 0:
        return N.LogSoftmax.apply(input.reshape(1)).reshape(())
    if dim == input.ndim - 1:
        return N.LogSoftmax.apply(input)
    return N.LogSoftmax.apply(input.transpose(dim, -1)).transpose(dim, -1)


def softmax(input, dim=-1):
    """``exp(x) / sum(exp(x))`` along ``dim``: the exponential of ``log_softmax`` (same Args)."""
    return log_softmax(input, dim).exp()


_REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(input, target, reduction="mean"):
    """Softmax cross-entropy between logits and class indices or class probabilities, as
    ``torch.nn.functional.cross_entropy`` (without weight, ignore_index or label_smoothing).

    Args:
        input: logits (N, C), (C,) unbatched, or (N, C, d1, ..., dk); floating.
        target: class indices of shape (N,), () or (1,) unbatched, or (N, d1, ..., dk), each
            in [0, C), int64 (or uint8 but for (N, C, d1, ...)); or class probabilities of the
            input's shape and dtype.
        reduction: ``'mean'`` (over all N*d1*...*dk losses; NaN when there are none), ``'sum'``
            or ``'none'`` (the losses in the target's shape, the input's without C, for
            probabilities).

    With indices ``loss = logsumexp(input[n, :]) - input[n, target[n]]``; with probabilities
    ``loss = -sum_c target[n, c] * log_softmax(input)[n, c]``.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got "
                         f"{reduction!r}")
    _check_tensors("cross_entropy", input)
    if not isinstance(target, Tensor):
        raise TypeError(f"cross_entropy: target must be a tensor, got {type(target).__name__}")
    if input.device != target.device:
        raise DeviceMismatchError(f"cross_entropy: input on {input.device}, target on "
                                  f"{target.device}")
    class_dim = 0 if input.ndim == 1 else 1
    if input.shape == target.shape:
        if target.dtype not in dtypes.FLOATING:
            raise DtypeError(f"cross_entropy: a target of the input's shape {input.shape} holds "
                             f"class probabilities and must be floating, got {target.dtype}")
        return _cross_entropy_probabilities(input, target, class_dim, reduction)
    # As PyTorch: log_softmax first (a 0-d input has no class dimension: IndexError; an integer
    # one is a DtypeError), then the target's shape, dtype and values.
    _dim(class_dim, input.ndim, "cross_entropy")
    _check_same("cross_entropy", input)
    _check_class_target(input, target)
    n_classes = input.shape[class_dim]
    t = target.numpy()
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        bad = t[(t < 0) | (t >= n_classes)].flat[0]
        raise IndexRangeError(f"cross_entropy: target {bad} is out of range for {n_classes} "
                              f"classes")
    # Rows of logits (M, C), the class dimension last, and their M targets.
    loss_shape = () if input.ndim == 1 else target.shape
    rows = int(np.prod(loss_shape, dtype=np.int64))
    logits = input.reshape(1, n_classes) if input.ndim == 1 else \
        input.permute(0, *range(2, input.ndim), 1).reshape(rows, n_classes)
    flat_target = target.reshape(rows).to(dtype=dtypes.int64)      # the kernels take int64
    if reduction == "mean" and rows == 0:      # PyTorch's mean of no losses: NaN
        return N.CrossEntropy.apply(logits, flat_target, "sum") * math.nan
    loss = N.CrossEntropy.apply(logits, flat_target, reduction)
    return loss.reshape(loss_shape) if reduction == "none" else loss


def _check_class_target(input, target):
    """A target of class indices fits ``input`` (C,), (N, C) or (N, C, d1, ..., dk): (), or (1,)
    unbatched, (N,), (N, d1, ..., dk); int64, or uint8 for the first two. Checked in PyTorch's
    order, so that the first problem has PyTorch's class (ValueError, RuntimeError, IndexError)."""
    def bad_shape(expects):
        return ShapeError(f"cross_entropy: an input of shape {input.shape} expects a target of "
                          f"{expects}, got shape {target.shape}")
    batched = input.ndim != 1
    # PyTorch reads a 0-d target's batch size as 0: with an empty batch that check passes.
    if batched and (input.shape[0] != (target.shape[0] if target.ndim else 0)):
        raise bad_shape(f"batch size {input.shape[0]}")
    if input.ndim <= 2:
        if target.ndim > 1:
            raise bad_shape("0 or 1 dimensions")
        if target.dtype not in (dtypes.int64, dtypes.uint8):
            raise DtypeError(f"cross_entropy: a target of class indices must be int64 or "
                             f"uint8, got {target.dtype}")
        if not batched and target.shape not in ((), (1,)):
            raise bad_shape("shape () or (1,)")
        if batched and target.ndim == 0:
            raise IndexError(f"cross_entropy: a 0-d target for a batch of shape {input.shape}")
        return
    if target.shape != input.shape[:1] + input.shape[2:]:
        raise bad_shape(f"shape {input.shape[:1] + input.shape[2:]}")
    if target.dtype != dtypes.int64:
        raise DtypeError(f"cross_entropy: a target of class indices for an input of "
                         f"{input.ndim} dimensions must be int64, got {target.dtype}")
    if input.ndim != 4 and input.shape[1] == 0 and target.numel():
        # PyTorch views these as (N, C, 1, -1): with no classes the views do not match.
        raise bad_shape("classes (the input has none)")


def _cross_entropy_probabilities(input, target, class_dim, reduction):
    """Cross-entropy with class probabilities (``target`` of the input's shape), in Tensor ops."""
    _dim(class_dim, input.ndim, "cross_entropy")    # PyTorch's log_softmax checks it first
    _check_same("cross_entropy", input, target)
    losses = -(target * log_softmax(input, class_dim)).sum(class_dim)
    if reduction == "none":
        return losses
    total = losses.sum()
    if reduction == "sum":
        return total
    # PyTorch divides by the number of rows, N*d1*...*dk, and gives NaN when there are none.
    rows = input.numel() // input.shape[class_dim] if input.numel() else 0
    return total / rows if rows else total * math.nan


def _check_probability(p, op):
    """``p`` is a number (TypeError) in [0, 1] (ArgumentError: PyTorch's range check raises
    ValueError, its check of NaN, which the range check lets through, RuntimeError)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"{op}: probability must be a number, got {p!r}")
    if not 0 <= p <= 1:
        raise ArgumentError(f"{op}: probability must be in [0, 1], got {p}")


def dropout(input, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p), when training.

    Args:
        input: a tensor; integer ones only where nothing is drawn (not training, p 0 or 1).
        p: the probability of zeroing, in [0, 1] (NaN is refused).
        training: apply dropout; otherwise return ``input`` itself.
    """
    _check_probability(p, "dropout")
    _check_tensors("dropout", input)
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0
    if input.dtype not in dtypes.FLOATING:
        raise DtypeError(f"dropout: a {input.dtype} tensor cannot be scaled by 1/(1-p)")
    keep = random.generator().random(input.shape) >= p
    mask = tensor(keep.astype(input.dtype) / (1 - p), dtype=input.dtype, device=input.device)
    return input * mask
