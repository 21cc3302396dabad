"""Embedding: gather rows of a (V, D) table by an integer index array, and its scatter-add backward.

``idx`` has any shape and is read flat: L = idx.size indices, int64. The forward output has shape
idx.shape + (D,), stored as (L, D); the backward takes grad_out of that shape and returns a
(V, D) gradient.

Versions:

- ``embedding_fwd_kernel1``: a grid-stride loop over the L*D outputs, one element per thread per
  step. Output element ``e`` is column ``j = e % D`` of gathered row ``i = e // D``, copied from
  ``weight[idx[i]*D + j]``: consecutive threads copy consecutive columns of one row (coalesced
  reads and writes while D is a good multiple of 32; a row is contiguous in both arrays). The
  thread of column 0 also checks the index (below). For D = 0 the loop runs over L "columns"
  of one, writing nothing, so that the indices into a weight of no columns are checked too.
- ``embedding_bwd_kernel1``: the launcher zeroes the (V, D) gradient (a memset); then a
  grid-stride loop over the L*D elements of grad_out, thread adding ``grad_out[e]`` into
  ``grad_w[idx[i]*D + j]`` with ``cuda.atomic.add``, so that repeated indices accumulate (two
  tokens with the same id add into the same row at the same time).

Determinism: float atomics commit in whatever order the hardware serves them, so on a GPU the
order of additions into a row hit by several indices, hence the last bits of the sum, can change
from run to run (float addition is not associative). The simulator runs threads in a fixed order
and does not show this. A deterministic version (sort the indices, then one block per distinct
row sums its occurrences in order) is a later rung.

Cost (L indices, D columns, s = bytes per element; V rows):

======================  =========================  ==========================================
kernel                  FLOPs                      bytes moved (DRAM, ideal)
======================  =========================  ==========================================
embedding_fwd           0 (a gather)               L*8 + 2*L*D*s
embedding_bwd           L*D adds (atomic)          V*D*s (memset) + L*8 + L*D*s + L*D*s (atomics
                                                   read-modify-write, in L2)
======================  =========================  ==========================================

Indices must lie in [0, V), and the forward checks them on the device: an index outside is
reported through the runtime's error flag (``common.report_error``; the first report wins), its
output row is NaN, and nothing is read or written out of bounds. The host raises at its next
synchronisation (``runtime.synchronize``, any copy to the host), not at the call, because
checking on the host would read the indices back every step: ``IndexRangeError`` (code
``BAD_INDEX``), or ``ArgumentError`` for a weight of no columns (code ``BAD_INDEX_NO_COLUMNS``;
PyTorch gathers those rows another way, whose range error is a RuntimeError). The backward does
not report again: a bad index adds nothing. (NumPy raises on such an index, and wraps a negative
one; PyTorch raises on both.)

Launches per call: ``embedding_fwd`` 1; ``embedding_bwd`` 1 and a memset (the zeroed gradient).

Test (simulator, no GPU)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_embedding.py

``PTX_SIGNATURES`` at the end lists every kernel and dtype the launchers use on a GPU.
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int64

from tilegrad.errors import ArgumentError, IndexRangeError

from . import runtime as rt
from .common import THREADS, contiguous, grid_blocks, numba_dtype, report_error

# Error codes (the runtime's flag), reported with value = the index and bound = V.
BAD_INDEX, BAD_INDEX_NO_COLUMNS = 10, 11


def _range_message(value, bound):
    return f"embedding: index {value} is out of range for a weight of {bound} rows"


rt.register_error(BAD_INDEX, lambda value, bound: IndexRangeError(_range_message(value, bound)))
rt.register_error(BAD_INDEX_NO_COLUMNS,
                  lambda value, bound: ArgumentError(_range_message(value, bound)))

# ---------------------------------------------------------------- kernels
# Factories take the dtype so that the NaN written for a bad index is a constant of the table's
# type. The thread count is a launch parameter only (no shared memory), so it is not compiled in.


@functools.lru_cache(maxsize=None)
def make_embedding_fwd_kernel(dtype):
    """``embedding_fwd_kernel1``: out[i, j] = weight[idx[i], j], one element per thread-step;
    an index outside [0, v) reported as ``code`` and its row NaN."""
    nan = dtype(np.nan)

    @cuda.jit
    def embedding_fwd_kernel1(weight, idx, out, n_idx, d, v, flag, code):
        start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        step = cuda.gridDim.x * cuda.blockDim.x
        cols = max(d, 1)                    # D = 0: one thread per index still checks it
        for e in range(start, n_idx * cols, step):
            i = e // cols                   # which index (output row)
            j = e - i * cols                # which column, e % cols without a second division
            r = idx[i]
            if r >= 0 and r < v:
                if j < d:                   # e == i*d + j whenever D > 0
                    out[e] = weight[r * d + j]
            else:
                if j == 0:                  # one report per bad index; the first one wins
                    report_error(flag, code, r, v)
                if j < d:
                    out[e] = nan

    return embedding_fwd_kernel1


@functools.lru_cache(maxsize=None)
def make_embedding_bwd_kernel(dtype):
    """``embedding_bwd_kernel1``: grad_w[idx[i], j] += grad_out[i, j] atomically."""

    @cuda.jit
    def embedding_bwd_kernel1(grad_out, idx, grad_w, n_idx, d, v):
        start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        step = cuda.gridDim.x * cuda.blockDim.x
        for e in range(start, n_idx * d, step):
            i = e // d
            j = e - i * d
            r = idx[i]
            if r >= 0 and r < v:            # several threads may hit one (r, j): atomics
                cuda.atomic.add(grad_w, r * d + j, grad_out[e])

    return embedding_bwd_kernel1

# ---------------------------------------------------------------- launchers


def _dtype(a):
    return numba_dtype(a.dtype, "embedding")


def _check_idx(idx):
    assert idx.dtype == np.int64, f"embedding: idx must be int64, not {idx.dtype}"


def embedding_fwd(weight, idx):
    """Rows of ``weight`` (V, D) gathered by the integer array ``idx``: shape idx.shape + (D,).
    An index outside [0, V) is reported by the kernel: an error at the next sync."""
    assert weight.ndim == 2, f"embedding: weight must be (V, D), got {weight.shape}"
    _check_idx(idx)
    weight, idx = contiguous(weight), contiguous(idx)
    v, d = weight.shape
    n_idx = idx.size
    out = rt.empty(tuple(idx.shape) + (d,), weight.dtype)
    if n_idx:                               # with D = 0 too: the indices are still checked
        code = BAD_INDEX if d else BAD_INDEX_NO_COLUMNS
        rt.launch(make_embedding_fwd_kernel(_dtype(weight)), grid_blocks(n_idx * max(d, 1)),
                  THREADS, weight.reshape(-1), idx.reshape(-1), out.reshape(-1), n_idx, d, v,
                  rt.expect_errors(), code)
    return out


def embedding_bwd(grad_out, idx, num_embeddings):
    """dL/dweight: each row of grad_out added into row idx of a (V, D) zero array."""
    _check_idx(idx)
    d = grad_out.shape[-1]
    n_idx = idx.size
    assert tuple(grad_out.shape) == tuple(idx.shape) + (d,), \
        f"embedding_bwd: grad_out {grad_out.shape} does not match idx {idx.shape} + (D,)"
    grad_out, idx = contiguous(grad_out), contiguous(idx)
    grad_w = rt.zeros((num_embeddings, d), grad_out.dtype)
    if n_idx * d and num_embeddings:
        rt.launch(make_embedding_bwd_kernel(_dtype(grad_out)), grid_blocks(n_idx * d), THREADS,
            grad_out.reshape(-1), idx.reshape(-1), grad_w.reshape(-1), n_idx, d, num_embeddings)
    return grad_w

# ---------------------------------------------------------------- compile check


def _signatures():
    idx = int64[::1]
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            (f"embedding_fwd_kernel1_{f}", make_embedding_fwd_kernel(f),
             (arr, idx, arr, int64, int64, int64, idx, int64)),
            (f"embedding_bwd_kernel1_{f}", make_embedding_bwd_kernel(f),
             (arr, idx, arr, int64, int64, int64)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
