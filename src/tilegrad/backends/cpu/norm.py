"""Batch norm and layer norm on the C++ kernels (``csrc/norm.cpp``).

float32 and float64 arrays (every one of a call in one dtype) go to ``tilegrad._cpu``, made
C-contiguous first; anything else goes to the NumPy backend, the specification. The running
statistics of ``batch_norm_fwd`` are updated in place, so they go to the kernel only when they
are already C-contiguous (a copy would take the update); otherwise the call goes to the
specification, which writes into any layout.
"""
from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import contiguous, same_float

PRIMITIVES = ("batch_norm_fwd", "batch_norm_bwd", "layer_norm_fwd", "layer_norm_bwd")


def _given(*arrays):
    return [a for a in arrays if a is not None]


def _opt(a):
    return None if a is None else contiguous(a)


def batch_norm_fwd(x, weight, bias, running_mean, running_var, momentum, eps):
    stats = _given(running_mean, running_var)
    if not same_float(x, *_given(weight, bias), *stats) or \
            not all(s.flags.c_contiguous and s.flags.writeable for s in stats):
        return spec.batch_norm_fwd(x, weight, bias, running_mean, running_var, momentum, eps)
    return ext.batch_norm_fwd(contiguous(x), _opt(weight), _opt(bias), running_mean, running_var,
                              momentum, eps)


def batch_norm_bwd(grad, x, weight, mean, invstd):
    if not same_float(grad, x, mean, invstd, *_given(weight)):
        return spec.batch_norm_bwd(grad, x, weight, mean, invstd)
    return ext.batch_norm_bwd(contiguous(grad), contiguous(x), _opt(weight), contiguous(mean),
                              contiguous(invstd))


def layer_norm_fwd(x, weight, bias, eps):
    if not same_float(x, *_given(weight, bias)):
        return spec.layer_norm_fwd(x, weight, bias, eps)
    return ext.layer_norm_fwd(contiguous(x), _opt(weight), _opt(bias), eps)


def layer_norm_bwd(grad, x, weight, mean, rstd):
    if not same_float(grad, x, mean, rstd, *_given(weight)):
        return spec.layer_norm_bwd(grad, x, weight, mean, rstd)
    return ext.layer_norm_bwd(contiguous(grad), contiguous(x), _opt(weight), contiguous(mean),
                              contiguous(rstd))
