"""Elementwise primitives from the C++ extension (``csrc/elementwise.cpp``): ``unary``,
``binary`` (the arithmetic ops, NumPy broadcasting), ``pow_scalar``, ``relu_bwd``.

float32 or float64 arrays of one dtype go to the extension; everything else (integer or bool
arrays, mixed dtypes, the comparisons, shapes ``relu_bwd`` does not take) to the NumPy backend.
``where_mask`` and the comparisons stay there: only ``Maximum``'s and ``Amax``'s backward use
them.
"""
import numpy as np

from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import FLOATS, contiguous, same_float

PRIMITIVES = ("unary", "binary", "pow_scalar", "relu_bwd")

_UNARY = frozenset(("neg", "abs", "relu", "sqrt", "exp", "log", "tanh", "sigmoid", "erf",
                    "sin", "cos"))
_BINARY = frozenset(("add", "sub", "mul", "div", "maximum", "pow"))


def _floating(x):
    return isinstance(x, np.ndarray) and x.dtype in FLOATS


def _compact(x):
    """``x`` C-contiguous for the kernel. A broadcast view (a stride 0 along a dimension, as
    ``broadcast_to`` makes) is cut to size 1 there instead of copied: the kernel broadcasts it
    back."""
    if not x.flags.c_contiguous and any(s == 0 and n > 1 for s, n in zip(x.strides, x.shape)):
        x = x[tuple(slice(0, 1) if s == 0 and n > 1 else slice(None)
                    for s, n in zip(x.strides, x.shape))]
    return contiguous(x)


def unary(op, x):
    if op in _UNARY and _floating(x):
        return ext.unary(op, contiguous(x))
    return spec.unary(op, x)


def binary(op, a, b):
    if op in _BINARY and _floating(a):
        if np.isscalar(b):                     # as the specification: b in a's dtype
            b = np.asarray(b, dtype=a.dtype)
        if isinstance(b, np.ndarray) and b.dtype == a.dtype:
            ca, cb = _compact(a), _compact(b)
            if ((ca.shape != a.shape or cb.shape != b.shape)
                    and np.broadcast_shapes(ca.shape, cb.shape)
                    != np.broadcast_shapes(a.shape, b.shape)):
                ca, cb = contiguous(a), contiguous(b)    # both cut along one dimension
            return ext.binary(op, ca, cb)
    return spec.binary(op, a, b)


def pow_scalar(x, p):
    if _floating(x) and isinstance(p, (int, float, np.integer, np.floating)):
        return ext.pow_scalar(contiguous(x), float(x.dtype.type(p)))
    return spec.pow_scalar(x, p)


def relu_bwd(grad, y):
    if _floating(grad) and isinstance(y, np.ndarray) and same_float(grad, y) \
            and grad.shape == y.shape:
        return ext.relu_bwd(contiguous(grad), contiguous(y))
    return spec.relu_bwd(grad, y)
