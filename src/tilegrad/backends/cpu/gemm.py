"""matmul on the C++ GEMM (csrc/gemm.cpp): ``op(a) @ op(b) (+ bias) (then ReLU)``.

Served by the extension: float32 or float64 operands of one dtype with at least two axes and
- 2-D @ 2-D;
- ``a`` with leading batch axes @ 2-D ``b``: without ``trans_a`` the batch folds into the rows of
  one GEMM, with it each matrix of the batch is one GEMM against the shared ``b``;
- 2-D ``a`` @ ``b`` with leading batch axes, or equal batch axes on both: one GEMM per matrix,
  the loop in C++ (``matmul_batched``);
with ``bias`` None or of shape ``(n,)`` / ``(1, n)`` fused into the GEMM. Any other bias (same
dtype) is added after the native product, as the specification does. Everything else (other
dtypes, mixed dtypes, 1-D operands, batch axes that broadcast, mismatched shapes) is the NumPy
backend's ``matmul``, so the result is always the specification's.
"""
import numpy as np

from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import FLOATS, contiguous, same_float

PRIMITIVES = ("matmul",)


def matmul(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    """As ``tilegrad.backends.numpy.matmul``."""
    # The common case first, with as little Python as possible (a linear layer: a few us each).
    if type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == 2 == b.ndim and \
            a.dtype == b.dtype and a.dtype in FLOATS and a.flags.c_contiguous and \
            b.flags.c_contiguous and (bias is None or (type(bias) is np.ndarray and bias.ndim == 1
                                                     and bias.dtype == a.dtype)) and \
            (a.shape[0] if trans_a else a.shape[1]) == (b.shape[1] if trans_b else b.shape[0]) \
            and (bias is None or bias.shape[0] == (b.shape[0] if trans_b else b.shape[1])):
        return ext.matmul(a, b, trans_a, trans_b, contiguous(bias) if bias is not None else None,
                          relu)

    def fallback():
        return spec.matmul(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias, relu=relu)

    arrays = (a, b) if bias is None else (a, b, bias)
    if not all(isinstance(x, np.ndarray) for x in arrays) or not same_float(*arrays):
        return fallback()
    if a.ndim < 2 or b.ndim < 2:
        return fallback()
    m, k = a.shape[-2:][::-1] if trans_a else a.shape[-2:]
    kb, n = b.shape[-2:][::-1] if trans_b else b.shape[-2:]
    if k != kb:
        return fallback()      # NumPy's own error
    batch_a, batch_b = a.shape[:-2], b.shape[:-2]
    if batch_a and batch_b and batch_a != batch_b:
        return fallback()      # broadcasting batch axes

    fused = bias is None or bias.shape in ((n,), (1, n))
    fused_bias = None if bias is None or not fused else contiguous(bias.reshape(n))
    fused_relu = relu and fused
    a, b = contiguous(a), contiguous(b)
    batch = batch_a or batch_b
    count = int(np.prod(batch, dtype=np.int64))
    if not batch:
        out = ext.matmul(a, b, trans_a, trans_b, fused_bias, fused_relu)
    elif not batch_b and not trans_a:      # the batch folds into m
        out = ext.matmul(a.reshape(count * m, k), b, False, trans_b, fused_bias, fused_relu)
    else:
        out = ext.matmul_batched(a.reshape((count,) + a.shape[-2:]) if batch_a else a,
                                 b.reshape((count,) + b.shape[-2:]) if batch_b else b,
                                 trans_a, trans_b, fused_bias, fused_relu)
    out = out.reshape(batch + (m, n))
    if not fused:              # a bias that broadcasts some other way: the specification's steps
        out = out + bias
        if relu:
            out = np.maximum(out, 0)
    return out
