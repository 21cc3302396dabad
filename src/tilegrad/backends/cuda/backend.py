"""The CUDA backend as one module of primitives, under the NumPy backend's names.

Every function here is a launcher from one of the kernel-family files; ``matmul`` runs the
version that ``tilegrad.kernels`` has chosen (v4 unless told otherwise).
"""
from tilegrad import kernels

from . import layout as _layout
from . import matmul as _matmul
from .conv import conv2d_bwd_data, conv2d_bwd_weight, conv2d_fwd  # noqa: F401
from .elementwise import binary, pow_scalar, relu_bwd, unary, where_mask  # noqa: F401
from .embedding import embedding_bwd, embedding_fwd  # noqa: F401
from .layout import (astype, broadcast_to, concat, copy_into, full, index, index_bwd,  # noqa: F401
                     permute, reshape)
from .lstm import lstm_cell_bwd, lstm_cell_fwd  # noqa: F401
from .optim import adam_step, sgd_step  # noqa: F401
from .pool import max_pool2d_bwd, max_pool2d_fwd  # noqa: F401
from .reduce import amax, argmax, sum  # noqa: F401
from .runtime import copy, empty, from_numpy, synchronize, to_numpy, zeros  # noqa: F401
from .softmax import (cross_entropy_bwd, cross_entropy_fwd, log_softmax_bwd,  # noqa: F401
                      log_softmax_fwd)

name = "cuda"
DTYPES = _layout.SUPPORTED_DTYPES     # the dtypes its kernels are compiled for


def matmul(a, b, trans_a=False, trans_b=False, bias=None, relu=False):
    """``op(a) @ op(b) (+ bias) (then ReLU)`` with the matmul version in use."""
    return _matmul.VERSIONS[kernels.current("matmul")](a, b, trans_a, trans_b, bias, relu)
