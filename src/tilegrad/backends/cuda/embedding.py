"""Embedding: gather rows of a (V, D) table by an integer index array, and its scatter-add backward.

``idx`` has any shape and is read flat: L = idx.size indices, int64. The forward output has shape
idx.shape + (D,), stored as (L, D); the backward takes grad_out of that shape and returns a
(V, D) gradient.

Versions:

- ``embedding_fwd_kernel1``: a grid-stride loop over the L*D outputs, one element per thread per
  step. Output element ``e`` is column ``j = e % D`` of gathered row ``i = e // D``, copied from
  ``weight[idx[i]*D + j]``: consecutive threads copy consecutive columns of one row (coalesced
  reads and writes while D is a good multiple of 32; a row is contiguous in both arrays).
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

Indices must lie in [0, V). A kernel cannot raise, and these never read or write out of bounds:
an out-of-range index gives a NaN row in the forward output and adds nothing in the backward.
(NumPy raises on such an index, and wraps a negative one; PyTorch raises on both.)

Test (simulator, no GPU)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_embedding.py

``PTX_SIGNATURES`` at the end lists every kernel and dtype the launchers use on a GPU.
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int64

from . import runtime as rt
from .common import THREADS, contiguous, grid_blocks, numba_dtype

# ---------------------------------------------------------------- kernels
# Factories take the dtype so that the NaN written for a bad index is a constant of the table's
# type. The thread count is a launch parameter only (no shared memory), so it is not compiled in.


@functools.lru_cache(maxsize=None)
def make_embedding_fwd_kernel(dtype):
    """``embedding_fwd_kernel1``: out[i, j] = weight[idx[i], j], one element per thread-step."""
    nan = dtype(np.nan)

    @cuda.jit
    def embedding_fwd_kernel1(weight, idx, out, n_idx, d, v):
        start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        step = cuda.gridDim.x * cuda.blockDim.x
        for e in range(start, n_idx * d, step):
            i = e // d                      # which index (output row)
            j = e - i * d                   # which column, e % d without a second division
            r = idx[i]
            if r >= 0 and r < v:
                out[e] = weight[r * d + j]
            else:
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
    """Rows of ``weight`` (V, D) gathered by the integer array ``idx``: shape idx.shape + (D,)."""
    assert weight.ndim == 2, f"embedding: weight must be (V, D), got {weight.shape}"
    _check_idx(idx)
    weight, idx = contiguous(weight), contiguous(idx)
    v, d = weight.shape
    n_idx = idx.size
    out = rt.empty(tuple(idx.shape) + (d,), weight.dtype)
    if n_idx * d:
        rt.launch(make_embedding_fwd_kernel(_dtype(weight)), grid_blocks(n_idx * d), THREADS,
                  weight.reshape(-1), idx.reshape(-1), out.reshape(-1), n_idx, d, v)
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
             (arr, idx, arr, int64, int64, int64)),
            (f"embedding_bwd_kernel1_{f}", make_embedding_bwd_kernel(f),
             (arr, idx, arr, int64, int64, int64)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
