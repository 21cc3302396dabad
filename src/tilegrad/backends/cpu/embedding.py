"""Embedding and dropout on the C++ kernels (``csrc/embedding.cpp``, ``csrc/dropout.cpp``; the
extension registers dropout with the embedding family).

float32 and float64 arrays with int32/int64 indices go to ``tilegrad._cpu`` (made C-contiguous
first); anything else goes to the NumPy backend, the specification. An index outside
[0, num_embeddings) raises IndexError naming the op (negative ones too: the kernels do not wrap
them as NumPy indexing would; tilegrad's ``embedding`` refuses them before it gets here).
Dropout's generator state is updated in place, so a state array the kernel cannot write as it
is (not a C-contiguous writable uint64 (3,) array) goes to the NumPy backend rather than to a copy.
"""
import numpy as np

from tilegrad import _cpu as ext
from tilegrad.backends import numpy as spec
from tilegrad.backends.cpu._util import contiguous, same_float

PRIMITIVES = ("embedding_fwd", "embedding_bwd", "dropout_fwd", "dropout_bwd")
_INDEX = (np.dtype(np.int64), np.dtype(np.int32))


def _indices(idx):
    return isinstance(idx, np.ndarray) and idx.dtype in _INDEX


def embedding_fwd(weight, idx):
    if not same_float(weight) or weight.ndim != 2 or not _indices(idx):
        return spec.embedding_fwd(weight, idx)
    return ext.embedding_fwd(contiguous(weight), contiguous(idx))


def embedding_bwd(grad_out, idx, num_embeddings):
    if (not same_float(grad_out) or not _indices(idx) or grad_out.shape[:-1] != idx.shape
            or grad_out.ndim != idx.ndim + 1):
        return spec.embedding_bwd(grad_out, idx, num_embeddings)
    return ext.embedding_bwd(contiguous(grad_out), contiguous(idx), int(num_embeddings))


def _probability(p):
    return type(p) in (float, int) and 0 <= p < 1


def dropout_fwd(x, p, state):
    if (not same_float(x) or not _probability(p) or not isinstance(state, np.ndarray)
            or state.dtype != np.uint64 or state.shape != (3,) or not state.flags.c_contiguous
            or not state.flags.writeable or not state.dtype.isnative):
        return spec.dropout_fwd(x, p, state)
    return ext.dropout_fwd(contiguous(x), p, state)


def dropout_bwd(grad, mask, p):
    if (not same_float(grad) or not _probability(p) or mask.dtype != np.bool_
            or mask.shape != grad.shape):
        return spec.dropout_bwd(grad, mask, p)
    return ext.dropout_bwd(contiguous(grad), contiguous(mask), p)
