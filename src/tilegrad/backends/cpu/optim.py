"""Optimizer updates and multi-tensor helpers on the C++ kernels (``csrc/optim.cpp``).

The updates write their arrays in place, so every array they write (parameters, momentum
buffers, Adam's m and v, step counts, fill_multi's and clip_scale_multi's arrays) must be one the
kernel can write as it is: a C-contiguous, aligned, writable float32/float64 array (step counts:
0-d float32). Anything else (a strided parameter, mixed dtypes, lists of unequal lengths,
hyperparameters that are not plain Python numbers, which NumPy would promote differently) goes to
the NumPy backend, the specification: a copy would lose the update. Read-only inputs (gradients)
are made C-contiguous first.
"""
import numpy as np

from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import FLOATS, contiguous

PRIMITIVES = ("sgd_step", "adam_step", "sgd_step_multi", "adam_step_multi", "fill_multi",
              "norm_multi", "clip_scale_multi")
_NUMBERS = (int, float, bool)


def _plain(*values):
    """Python numbers, which NumPy rounds to the arrays' dtype as the kernels do."""
    return all(type(v) in _NUMBERS for v in values)


def _target(x, dtype=None):
    """An array the kernels can update in place as it is."""
    return (isinstance(x, np.ndarray) and x.dtype in FLOATS and x.dtype.isnative
            and (dtype is None or x.dtype == dtype) and x.flags.c_contiguous
            and x.flags.aligned and x.flags.writeable)


def _like(x, param):
    return isinstance(x, np.ndarray) and x.dtype == param.dtype and x.shape == param.shape


def _lists(*lists):
    return all(isinstance(xs, (list, tuple)) for xs in lists) and \
        len({len(xs) for xs in lists}) == 1 and len(lists[0]) > 0


def _scalar(x, dtype, writable=False):
    return isinstance(x, np.ndarray) and x.shape == () and x.dtype == dtype and \
        (not writable or _target(x))


def sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first):
    if not (_target(param) and _like(grad, param) and _plain(lr, momentum, dampening,
                                                             weight_decay, nesterov, first)
            and (not momentum or (_target(buf, param.dtype) and buf.shape == param.shape))):
        return spec.sgd_step(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov,
                             first)
    ext.sgd_step(param, contiguous(grad), buf if momentum else None, lr, momentum, dampening,
                 weight_decay, bool(nesterov), bool(first))


def adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay):
    if not (_target(param) and _like(grad, param) and _plain(step, lr, beta1, beta2, eps,
                                                             weight_decay)
            and all(_target(a, param.dtype) and a.shape == param.shape for a in (m, v))):
        return spec.adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay)
    ext.adam_step(param, contiguous(grad), m, v, step, lr, beta1, beta2, eps, weight_decay)


def _group(params, grads, *state):
    """Whether a parameter group fits the kernels: params and the in-place ``state`` lists
    writable arrays of one dtype, grads of their shapes, all lists of one length."""
    if not _lists(params, grads, *state) or not _target(params[0]):
        return False
    dt = params[0].dtype
    return all(_target(p, dt) and _like(g, p) and all(_target(s[k], dt) and s[k].shape == p.shape
                                                      for s in state)
               for k, (p, g) in enumerate(zip(params, grads)))


def _steps(steps, count):
    return isinstance(steps, (list, tuple)) and len(steps) == count and \
        all(_scalar(s, np.float32, writable=True) for s in steps)


def sgd_step_multi(params, grads, bufs, steps, lr, momentum, dampening, weight_decay, nesterov):
    ok = _plain(momentum, dampening, weight_decay, nesterov) and \
        (_group(params, grads, bufs) and _steps(steps, len(params)) if momentum
         else _group(params, grads))
    if not ok or not _scalar(lr, params[0].dtype):
        return spec.sgd_step_multi(params, grads, bufs, steps, lr, momentum, dampening,
                                   weight_decay, nesterov)
    ext.sgd_step_multi(params, [contiguous(g) for g in grads], bufs if momentum else None,
                       steps if momentum else None, contiguous(lr), momentum, dampening,
                       weight_decay, bool(nesterov))


def adam_step_multi(params, grads, ms, vs, steps, lr, beta1, beta2, eps, weight_decay):
    if not (_plain(beta1, beta2, eps, weight_decay) and _group(params, grads, ms, vs)
            and _steps(steps, len(params)) and _scalar(lr, params[0].dtype)):
        return spec.adam_step_multi(params, grads, ms, vs, steps, lr, beta1, beta2, eps,
                                    weight_decay)
    ext.adam_step_multi(params, [contiguous(g) for g in grads], ms, vs, steps, contiguous(lr),
                        beta1, beta2, eps, weight_decay)


def fill_multi(xs, value):
    if not (isinstance(xs, (list, tuple)) and _plain(value) and all(_target(x) for x in xs)):
        return spec.fill_multi(xs, value)
    ext.fill_multi(xs, value)


def norm_multi(xs):
    if not (isinstance(xs, (list, tuple)) and xs and all(isinstance(x, np.ndarray) for x in xs)
            and xs[0].dtype in FLOATS and all(x.dtype == xs[0].dtype for x in xs)):
        return spec.norm_multi(xs)
    return ext.norm_multi([contiguous(x) for x in xs])


def clip_scale_multi(xs, total, max_norm):
    if not (isinstance(xs, (list, tuple)) and _plain(max_norm) and isinstance(total, np.ndarray)
            and total.shape == () and total.dtype in FLOATS
            and all(_target(x, total.dtype) for x in xs)):
        return spec.clip_scale_multi(xs, total, max_norm)
    ext.clip_scale_multi(xs, contiguous(total), max_norm)
