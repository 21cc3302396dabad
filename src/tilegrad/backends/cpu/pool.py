"""Max-pooling on the C++ kernels (``csrc/pool.cpp``).

float32 and float64 arrays go to ``tilegrad._cpu`` (made C-contiguous first); anything else
goes to the NumPy backend, the specification.
"""
import numpy as np

from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import contiguous, same_float

PRIMITIVES = ("max_pool2d_fwd", "max_pool2d_bwd")
_INDEX = (np.dtype(np.int64), np.dtype(np.int32))


def max_pool2d_fwd(x, kernel, stride, padding):
    if not same_float(x):
        return spec.max_pool2d_fwd(x, kernel, stride, padding)
    return ext.max_pool2d_fwd(contiguous(x), tuple(kernel), tuple(stride), tuple(padding))


def max_pool2d_bwd(grad_out, argmax, x_shape):
    if not same_float(grad_out) or argmax.dtype not in _INDEX:
        return spec.max_pool2d_bwd(grad_out, argmax, x_shape)
    return ext.max_pool2d_bwd(contiguous(grad_out), contiguous(argmax), tuple(x_shape))
