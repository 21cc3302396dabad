"""Log-softmax and the fused softmax cross-entropy from the C++ extension
(``csrc/softmax.cpp``), over the last axis, float32 and float64.

Targets may be int64 or int32 (made C-contiguous); other target dtypes, other logits dtypes,
a 0-d ``x`` and shapes the kernels do not take go to the NumPy backend. A target equal to
``ignore_index`` gives its row loss 0 and gradient 0 ('mean' counts only the other rows); any
other target outside [0, C) raises ``IndexRangeError`` (an IndexError) from the kernel before
anything is computed.
"""
import numpy as np

from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import FLOATS, contiguous, same_float

PRIMITIVES = ("log_softmax_fwd", "log_softmax_bwd", "cross_entropy_fwd", "cross_entropy_bwd")

_INDEX = (np.dtype(np.int64), np.dtype(np.int32))
_REDUCTIONS = ("none", "sum", "mean")


def _floating(x):
    return isinstance(x, np.ndarray) and x.dtype in FLOATS


def _ce_native(logits, target, reduction):
    return (_floating(logits) and logits.ndim == 2 and isinstance(target, np.ndarray)
            and target.dtype in _INDEX and target.shape == logits.shape[:1]
            and reduction in _REDUCTIONS)


def log_softmax_fwd(x):
    if _floating(x) and x.ndim >= 1:
        return ext.log_softmax_fwd(contiguous(x))
    return spec.log_softmax_fwd(x)


def log_softmax_bwd(grad, y):
    if _floating(grad) and grad.ndim >= 1 and isinstance(y, np.ndarray) and same_float(grad, y) \
            and grad.shape == y.shape:
        return ext.log_softmax_bwd(contiguous(grad), contiguous(y))
    return spec.log_softmax_bwd(grad, y)


def cross_entropy_fwd(logits, target, reduction="none", ignore_index=-100):
    if _ce_native(logits, target, reduction):
        return ext.cross_entropy_fwd(contiguous(logits), contiguous(target), reduction,
                                     int(ignore_index))
    return spec.cross_entropy_fwd(logits, target, reduction, ignore_index)


def cross_entropy_bwd(logits, target, grad_loss, reduction="none", ignore_index=-100):
    if _ce_native(logits, target, reduction) and isinstance(grad_loss, np.ndarray) \
            and same_float(logits, grad_loss) \
            and (grad_loss.shape == target.shape if reduction == "none" else grad_loss.size == 1):
        return ext.cross_entropy_bwd(contiguous(logits), contiguous(target),
                                     contiguous(grad_loss), reduction, int(ignore_index))
    return spec.cross_entropy_bwd(logits, target, grad_loss, reduction, ignore_index)
