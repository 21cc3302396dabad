"""Convolution on the C++ kernels (``csrc/conv.cpp``): im2col tiles and the GEMM.

float32 and float64 arrays of one dtype go to ``tilegrad._cpu`` (made C-contiguous first);
anything else goes to the NumPy backend, the specification.
"""
from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import contiguous, same_float

PRIMITIVES = ("conv2d_fwd", "conv2d_bwd_data", "conv2d_bwd_weight")


def conv2d_fwd(x, w, bias, stride, padding):
    if not same_float(x, w, *(() if bias is None else (bias,))):
        return spec.conv2d_fwd(x, w, bias, stride, padding)
    return ext.conv2d_fwd(contiguous(x), contiguous(w), None if bias is None else contiguous(bias),
                          tuple(stride), tuple(padding))


def conv2d_bwd_data(grad_out, w, x_shape, stride, padding):
    if not same_float(grad_out, w):
        return spec.conv2d_bwd_data(grad_out, w, x_shape, stride, padding)
    return ext.conv2d_bwd_data(contiguous(grad_out), contiguous(w), tuple(x_shape),
                               tuple(stride), tuple(padding))


def conv2d_bwd_weight(grad_out, x, w_shape, stride, padding):
    if not same_float(grad_out, x):
        return spec.conv2d_bwd_weight(grad_out, x, w_shape, stride, padding)
    return ext.conv2d_bwd_weight(contiguous(grad_out), contiguous(x), tuple(w_shape),
                                 tuple(stride), tuple(padding))
