"""Argument checks for ``nn.functional`` and the layers, in PyTorch's order and with its error
classes: an argument of the wrong type is a TypeError before anything else is checked; a
dimension out of range an IndexError; shapes, dtypes and values the op cannot take are
ShapeError, DtypeError and ArgumentError (RuntimeError, as in PyTorch)."""
import numbers

import numpy as np

from .. import dtypes
from .._checks import is_int
from ..errors import ArgumentError, DeviceMismatchError, DtypeError, ShapeError
from ..tensor import Tensor


def ints(v, name, op):
    """``v`` (an int or a sequence of ints) as a tuple of ints, or a TypeError naming ``op`` and
    ``name``. Only the types: how many values there must be is the caller's check, made after
    every argument's type (PyTorch parses all arguments first)."""
    if is_int(v):
        return (int(v),)
    if isinstance(v, (tuple, list)) and all(is_int(n) for n in v):
        return tuple(int(n) for n in v)
    raise TypeError(f"{op}: {name} must be an int or a tuple of ints, got {v!r}")


def two(v, name, op):
    """A tuple from ``ints`` as the (height, width) pair: one value serves both."""
    if len(v) not in (1, 2):
        raise ArgumentError(f"{op}: {name} must be a single int or a pair of ints, got {v}")
    return (v[0], v[-1])


def pair(v, name, op):
    """``v`` (an int or a sequence of one or two ints) as a (height, width) pair of ints."""
    return two(ints(v, name, op), name, op)


def dim(dim, ndim, op, name="dim"):
    """``dim`` in [0, ndim), negatives counting from the end; as PyTorch, a 0-d tensor takes
    0 and -1. A non-integer is a TypeError, one out of range an IndexError."""
    if not is_int(dim):
        raise TypeError(f"{op}: {name} must be an int, got {dim!r}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: {name} {dim} is out of range for a tensor of {ndim} dimensions "
                         f"(expects one in [{-n}, {n - 1}])")
    return int(dim) % n


def check_tensors(op, *tensors):
    """Every argument (None skipped) is a Tensor, or a TypeError naming ``op``."""
    for t in tensors:
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{op}: expects tensors, got {type(t).__name__}")


def check_same(op, *tensors):
    """Every tensor (None skipped) on one device, with one floating dtype."""
    check_tensors(op, *tensors)
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


def bias_target(input_ndim, bias_shape, lead, rows, out_features):
    """The shape PyTorch's ``linear`` broadcasts ``bias`` to, without enlarging it: with a 2-D
    input, or a bias of one dimension that is not 1, it flattens the input to (rows,
    in_features) and adds the bias in ``addmm`` (rows, out_features); other biases it adds to
    the output, (*lead, out_features). ``addmm`` takes no 1-D weight (``out_features`` None):
    None, no shape, then."""
    fused = input_ndim == 2 or len(bias_shape) == 1 or sum(n != 1 for n in bias_shape) == 1
    if out_features is None:
        return None if fused else lead
    return (rows, out_features) if fused else lead + (out_features,)


def broadcast_shape(*shapes):
    """The shape ``shapes`` broadcast to, or None where they do not."""
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        return None


def size(t, d, name):
    """PyTorch's ``t.size(d)`` for d in (0, 1): an IndexError where ``t`` has no dimension d."""
    if t.ndim <= d:
        raise IndexError(f"lstm_cell: {name} of shape {t.shape} has no dimension {d}")
    return t.shape[d]


def check_lstm_shapes(input, h, c, w_ih, w_hh):
    """input (B, I), h and c (B, H), w_ih (4H, I), w_hh (4H, H), checked in PyTorch's order, so
    that the first mismatch has its class: sizes are read one by one (IndexError where a tensor
    lacks the dimension), then compared (ShapeError)."""
    def mismatch(what):
        return ShapeError(f"lstm_cell: {what} (input {input.shape}, h {h.shape}, c {c.shape}, "
                          f"w_ih {w_ih.shape}, w_hh {w_hh.shape}; expects (B, I), (B, H), (B, H), "
                          f"(4H, I), (4H, H))")
    n_in = size(w_ih, 1, "w_ih")
    if size(input, 1, "input") != n_in:
        raise mismatch("the input size differs from w_ih's")
    hidden = size(w_hh, 1, "w_hh")
    for name, t in (("h", h), ("c", c)):
        if size(input, 0, "input") != size(t, 0, name):
            raise mismatch(f"the batch sizes of input and {name} differ")
        if size(t, 1, name) != hidden:
            raise mismatch(f"the hidden size of {name} differs from w_hh's")
    if w_ih.shape[0] != 4 * hidden or w_hh.shape[0] != 4 * hidden:
        raise mismatch("the weights do not have 4 * hidden rows")
    if not input.ndim == h.ndim == c.ndim == w_ih.ndim == w_hh.ndim == 2:
        raise mismatch("tensors of more than 2 dimensions")


def check_class_target(input, target, op="cross_entropy"):
    """A target of class indices fits ``input`` (C,), (N, C) or (N, C, d1, ..., dk): (), or (1,)
    unbatched, (N,), (N, d1, ..., dk); int64, or uint8 for the first two. Checked in PyTorch's
    order, so that the first problem has PyTorch's class (ValueError, RuntimeError, IndexError)."""
    def bad_shape(expects):
        return ShapeError(f"{op}: an input of shape {input.shape} expects a target of "
                          f"{expects}, got shape {target.shape}")
    batched = input.ndim != 1
    # PyTorch reads a 0-d target's batch size as 0: with an empty batch that check passes.
    if batched and (input.shape[0] != (target.shape[0] if target.ndim else 0)):
        raise bad_shape(f"batch size {input.shape[0]}")
    if input.ndim <= 2:
        if target.ndim > 1:
            raise bad_shape("0 or 1 dimensions")
        if target.dtype not in (dtypes.int64, dtypes.uint8):
            raise DtypeError(f"{op}: a target of class indices must be int64 or "
                             f"uint8, got {target.dtype}")
        if not batched and target.shape not in ((), (1,)):
            raise bad_shape("shape () or (1,)")
        if batched and target.ndim == 0:
            raise IndexError(f"{op}: a 0-d target for a batch of shape {input.shape}")
        return
    if target.shape != input.shape[:1] + input.shape[2:]:
        raise bad_shape(f"shape {input.shape[:1] + input.shape[2:]}")
    if target.dtype != dtypes.int64:
        raise DtypeError(f"{op}: a target of class indices for an input of "
                         f"{input.ndim} dimensions must be int64, got {target.dtype}")
    if input.ndim != 4 and input.shape[1] == 0 and target.numel():
        # PyTorch views these as (N, C, 1, -1): with no classes the views do not match.
        raise bad_shape("classes (the input has none)")


def check_probability(p, op):
    """``p`` is a number (TypeError) in [0, 1] (ArgumentError: PyTorch's range check raises
    ValueError, its check of NaN, which the range check lets through, RuntimeError)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"{op}: probability must be a number, got {p!r}")
    if not 0 <= p <= 1:
        raise ArgumentError(f"{op}: probability must be in [0, 1], got {p}")
