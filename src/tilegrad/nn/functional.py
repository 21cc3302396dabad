"""Functional forms of the layers, as ``torch.nn.functional``: each checks its arguments,
then applies one autograd Function (or a few Tensor operations)."""
import numpy as np

from .. import dtypes, random
from ..ops import nn as N
from ..creation import tensor
from ..tensor import Tensor


def _pair(v, name, op):
    v = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(v) != 2 or not all(isinstance(n, (int, np.integer)) for n in v):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v}")
    return int(v[0]), int(v[1])


def _check_same(op, *tensors):
    """Every tensor (None skipped) on one device, with one floating dtype."""
    ts = [t for t in tensors if t is not None]
    for t in ts:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expects tensors, got {type(t).__name__}")
    first = ts[0]
    if first.dtype not in dtypes.FLOATING:
        raise TypeError(f"{op}: expects a floating-point input, got {first.dtype}")
    for t in ts[1:]:
        if t.device != first.device:
            raise ValueError(f"{op}: tensors are on different devices ({first.device} and {t.device})")
        if t.dtype != first.dtype:
            raise TypeError(f"{op}: dtype mismatch ({first.dtype} and {t.dtype})")


def linear(input, weight, bias=None):
    """``y = x @ weight.T + bias`` over the last dimension of ``input``.

    Shape: input (*, in_features), weight (out_features, in_features), bias (out_features,);
    output (*, out_features).
    """
    _check_same("linear", input, weight, bias)
    if weight.ndim != 2 or input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {input.shape} does not match weight of shape "
                         f"{weight.shape} (expects input (*, {weight.shape[-1]}))")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias of shape {bias.shape} does not match weight of shape "
                         f"{weight.shape} (expects ({weight.shape[0]},))")
    lead = input.shape[:-1]
    x2 = input.reshape(-1, input.shape[-1]) if input.ndim != 2 else input
    y = N.Linear.apply(x2, weight, bias)
    return y.reshape(lead + (weight.shape[0],)) if input.ndim != 2 else y


def relu(input):
    return input.relu()


def conv2d(input, weight, bias=None, stride=1, padding=0):
    """2-D cross-correlation, as ``torch.nn.functional.conv2d`` (no dilation or groups).

    Shape: input (N, C, H, W), weight (F, C, KH, KW), bias (F,); output (N, F, Ho, Wo) with
    ``Ho = (H + 2*padding - KH) // stride + 1``.
    """
    _check_same("conv2d", input, weight, bias)
    stride, padding = _pair(stride, "stride", "conv2d"), _pair(padding, "padding", "conv2d")
    if input.ndim != 4 or weight.ndim != 4 or input.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input of shape {input.shape} does not match weight of shape "
                         f"{weight.shape} (expects input (N, C, H, W), weight (F, C, KH, KW))")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias of shape {bias.shape} does not match weight of shape {weight.shape}")
    if min(stride) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d: stride {stride} must be positive and padding {padding} non-negative")
    h, w = input.shape[2] + 2 * padding[0], input.shape[3] + 2 * padding[1]
    if h < weight.shape[2] or w < weight.shape[3]:
        raise ValueError(f"conv2d: kernel {weight.shape[2:]} is larger than the padded input "
                         f"({h}, {w}) of input shape {input.shape}")
    return N.Conv2d.apply(input, weight, bias, stride, padding)


def max_pool2d(input, kernel_size, stride=None, padding=0):
    """Maximum over each kernel_size window, as ``torch.nn.functional.max_pool2d``.

    ``stride`` defaults to ``kernel_size``; padding pads with -inf and is at most half the kernel.
    """
    _check_same("max_pool2d", input)
    kernel = _pair(kernel_size, "kernel_size", "max_pool2d")
    stride = kernel if stride is None else _pair(stride, "stride", "max_pool2d")
    padding = _pair(padding, "padding", "max_pool2d")
    if input.ndim != 4:
        raise ValueError(f"max_pool2d: expects input (N, C, H, W), got shape {input.shape}")
    if min(kernel) < 1 or min(stride) < 1 or padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"max_pool2d: kernel {kernel}, stride {stride} must be positive and "
                         f"padding {padding} at most half the kernel")
    if input.shape[2] + 2 * padding[0] < kernel[0] or input.shape[3] + 2 * padding[1] < kernel[1]:
        raise ValueError(f"max_pool2d: kernel {kernel} is larger than the input {input.shape}")
    return N.MaxPool2d.apply(input, kernel, stride, padding)


def flatten(input, start_dim=1, end_dim=-1):
    return input.flatten(start_dim, end_dim)


def embedding(input, weight):
    """Rows of ``weight`` (num_embeddings, embedding_dim) picked by the integers in ``input``."""
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be an integer tensor, got "
                        f"{getattr(input, 'dtype', type(input).__name__)}")
    _check_same("embedding", weight)
    if input.device != weight.device:
        raise ValueError(f"embedding: indices on {input.device}, weight on {weight.device}")
    idx = input.numpy()
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise ValueError(f"embedding: index out of range: indices span [{idx.min()}, {idx.max()}] "
                         f"for a weight of {weight.shape[0]} rows")
    return N.Embedding.apply(weight, input)


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: ``gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh`` (gates i, f, g, o), then
    ``c' = f*c + i*g``, ``h' = o*tanh(c')``. Returns ``(h', c')``.

    Shape: input (B, I), hx = (h, c) each (B, H), w_ih (4H, I), w_hh (4H, H).
    """
    h, c = hx
    _check_same("lstm_cell", input, h, c, w_ih, w_hh, b_ih, b_hh)
    hidden = w_hh.shape[1] if w_hh.ndim == 2 else -1
    if w_hh.shape != (4 * hidden, hidden) or h.shape != c.shape or h.shape[-1:] != (hidden,):
        raise ValueError(f"lstm_cell: hidden state {h.shape}, cell {c.shape} and weight_hh "
                         f"{w_hh.shape} do not match (expects (B, H), (B, H), (4H, H))")
    gates = linear(input, w_ih, b_ih) + linear(h, w_hh, b_hh)
    return lstm_cell_pointwise(gates, c)


def lstm_cell_pointwise(gates, c):
    """The cell's activations and state update from its pre-activation gates (B, 4H)."""
    return N.LSTMCellPointwise.apply(gates, c)


def log_softmax(input, dim=-1):
    """``x - logsumexp(x)`` along ``dim``."""
    _check_same("log_softmax", input)
    if input.ndim == 0:
        raise ValueError("log_softmax: expects at least one dimension")
    if not -input.ndim <= dim < input.ndim:
        raise IndexError(f"log_softmax: dim {dim} is out of range for a tensor of {input.ndim} dimensions")
    dim = dim % input.ndim
    if dim == input.ndim - 1:
        return N.LogSoftmax.apply(input)
    return N.LogSoftmax.apply(input.transpose(dim, -1)).transpose(dim, -1)


def softmax(input, dim=-1):
    return log_softmax(input, dim).exp()


def cross_entropy(input, target, reduction="mean"):
    """Softmax cross-entropy between logits ``input`` (N, C) and class indices ``target`` (N,).

    ``loss[n] = logsumexp(input[n]) - input[n, target[n]]``, averaged (``'mean'``), summed
    (``'sum'``) or returned per row (``'none'``).
    """
    _check_same("cross_entropy", input)
    if not isinstance(target, Tensor) or target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must be an integer tensor of class indices, got "
                        f"{getattr(target, 'dtype', type(target).__name__)}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if input.ndim != 2 or target.shape != input.shape[:1]:
        raise ValueError(f"cross_entropy: input of shape {input.shape} and target of shape "
                         f"{target.shape} do not match (expects (N, C) and (N,))")
    if input.device != target.device:
        raise ValueError(f"cross_entropy: input on {input.device}, target on {target.device}")
    t = target.numpy()
    if t.size and (t.min() < 0 or t.max() >= input.shape[1]):
        bad = t[(t < 0) | (t >= input.shape[1])][0]
        raise ValueError(f"cross_entropy: target {bad} is out of range for {input.shape[1]} classes")
    return N.CrossEntropy.apply(input, target, reduction)


def dropout(input, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p), when training."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: probability must be in [0, 1], got {p}")
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0
    keep = random.generator().random(input.shape) >= p
    mask = tensor(keep.astype(input.dtype) / (1 - p), dtype=input.dtype, device=input.device)
    return input * mask
