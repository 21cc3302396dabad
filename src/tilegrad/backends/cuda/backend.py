"""The CUDA backend as one module of primitives, under the NumPy backend's names.

Every function here is a launcher from one of the kernel-family files. ``matmul``, the three
convolution passes, log-softmax and cross-entropy (family "softmax_cross_entropy") and sum and
amax (family "reduce") run the version that ``tilegrad.kernels`` has chosen (each family's
default unless told otherwise); a family's versions are declared in its own file.
"""
from tilegrad import kernels

from . import layout as _layout
from .elementwise import binary, pow_scalar, relu_bwd, unary, where_mask  # noqa: F401
from .embedding import embedding_bwd, embedding_fwd  # noqa: F401
from .foreach import clip_scale_multi, fill_multi, norm_multi  # noqa: F401
from .layout import (astype, broadcast_to, concat, copy_into, full, index, index_bwd,  # noqa: F401
                     index_put, permute, reshape)
from .lstm import lstm_cell_bwd, lstm_cell_fwd  # noqa: F401
from .lstm import lstm_bias_bwd, lstm_seq_bwd, lstm_seq_fwd  # noqa: F401
from .norm import batch_norm_bwd, batch_norm_fwd, layer_norm_bwd, layer_norm_fwd  # noqa: F401
from .optim import adam_step, sgd_step  # noqa: F401
from .optim import adam_step_multi, sgd_step_multi  # noqa: F401
from .pool import max_pool2d_bwd, max_pool2d_fwd  # noqa: F401
from .random import dropout_bwd, dropout_fwd  # noqa: F401
from .reduce import argmax  # noqa: F401
from .runtime import copy, empty, from_numpy, synchronize, to_numpy, zeros  # noqa: F401
from .runtime import forbid_in_capture  # noqa: F401  (not a primitive: capture's guard)

name = "cuda"
DTYPES = _layout.SUPPORTED_DTYPES     # the dtypes its kernels are compiled for
# embedding_fwd and cross_entropy_fwd check their indices in the kernels (an error raised at the
# next sync), so nn.functional does not read them back on the host.
CHECKS_INDICES = True


def matmul(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    """``op(a) @ op(b) (+ bias) (then ReLU)`` with the matmul version in use."""
    return kernels.launcher("matmul")(a, b, trans_a, trans_b, bias, relu)


def conv2d_fwd(x, w, bias, stride, padding):
    """Cross-correlation (N, C, H, W) x (F, C, KH, KW) -> (N, F, Ho, Wo), version in use."""
    return kernels.launcher("conv2d_fwd")(x, w, bias, stride, padding)


def conv2d_bwd_data(grad_out, w, x_shape, stride, padding):
    """dL/dx of ``conv2d_fwd``, version in use."""
    return kernels.launcher("conv2d_bwd_data")(grad_out, w, x_shape, stride, padding)


def conv2d_bwd_weight(grad_out, x, w_shape, stride, padding):
    """dL/dw of ``conv2d_fwd``, version in use."""
    return kernels.launcher("conv2d_bwd_weight")(grad_out, x, w_shape, stride, padding)


def log_softmax_fwd(x):
    """log(softmax(x)) over the last axis, version in use."""
    return kernels.launcher("softmax_cross_entropy").log_softmax_fwd(x)


def log_softmax_bwd(grad, y):
    """dL/dx of ``log_softmax_fwd`` from its output ``y``, version in use."""
    return kernels.launcher("softmax_cross_entropy").log_softmax_bwd(grad, y)


def cross_entropy_fwd(logits, target, reduction="none", ignore_index=-100):
    """Softmax cross-entropy of logits (N, C) against int64 targets, version in use."""
    return kernels.launcher("softmax_cross_entropy").cross_entropy_fwd(logits, target, reduction,
                                                                       ignore_index)


def cross_entropy_bwd(logits, target, grad_loss, reduction="none", ignore_index=-100):
    """dL/dlogits of ``cross_entropy_fwd``, version in use."""
    return kernels.launcher("softmax_cross_entropy").cross_entropy_bwd(logits, target, grad_loss,
                                                                       reduction, ignore_index)


def sum(x, axes, keepdims):
    """Sum over ``axes``, version in use."""
    return kernels.launcher("reduce").sum(x, axes, keepdims)


def amax(x, axes, keepdims):
    """Maximum over ``axes`` (NaN propagates), version in use."""
    return kernels.launcher("reduce").amax(x, axes, keepdims)
