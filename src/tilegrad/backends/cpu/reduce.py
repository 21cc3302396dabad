"""Reductions from the C++ extension (``csrc/reduce.cpp``): ``sum`` and ``amax`` over any tuple
of axes, float32 and float64 (sums accumulated in double).

Other dtypes, empty arrays, and axes that are not a tuple of distinct in-range ints go to the
NumPy backend, as does ``argmax`` (only ``Tensor.argmax`` calls it).
"""
import numpy as np

from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import FLOATS, contiguous

PRIMITIVES = ("sum", "amax")


def _native(x, axes):
    """Whether the kernel takes ``x`` and ``axes`` (else the specification decides)."""
    if not (isinstance(x, np.ndarray) and x.dtype in FLOATS and x.size and isinstance(axes, tuple)):
        return False
    seen = set()
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool) or not -x.ndim <= a < x.ndim:
            return False
        seen.add(int(a) % x.ndim)
    return len(seen) == len(axes)


def sum(x, axes, keepdims):
    if _native(x, axes):
        return ext.sum(contiguous(x), tuple(int(a) for a in axes), bool(keepdims))
    return spec.sum(x, axes, keepdims)


def amax(x, axes, keepdims):
    if _native(x, axes):
        return ext.amax(contiguous(x), tuple(int(a) for a in axes), bool(keepdims))
    return spec.amax(x, axes, keepdims)
