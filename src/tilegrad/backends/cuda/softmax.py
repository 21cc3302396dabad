"""Log-softmax and fused softmax-cross-entropy over the last axis, forward and backward.

An input of shape (..., C) is read as R = size / C rows of length C, contiguous in memory (row
``r`` starts at element ``r*C``); leading dimensions are only a count of rows.

Versions:

- ``log_softmax_fwd_kernel1``, ``log_softmax_bwd_kernel1``, ``cross_entropy_fwd_kernel1``,
  ``cross_entropy_bwd_kernel1`` (factories ``make_<op>_kernel(block, dtype)``): one block per row,
  a grid-stride loop over rows when there are more rows than blocks. Thread ``t`` walks columns
  ``t, t+block, ...`` (consecutive threads read consecutive elements: coalesced), keeps a private
  max or sum, and the block combines its ``block`` partials by a tree in shared memory. Numerically
  stable: the row max ``m`` first, then ``s = sum(exp(x - m))`` (every term <= 1, and s >= 1), so
  nothing overflows whatever the logits' magnitude. ``block`` is a compile-time constant (the
  shared array's size and the tree's depth): 256 on a GPU, 8 in the simulator so that every
  thread holds several columns and the tree has three levels.

  The cross-entropy forward is one kernel (max, sum, then thread 0 writes
  ``loss[n] = log(s) - (x[n, target[n]] - m)``); so is the backward, which recomputes m and s
  from the logits rather than saving softmax (N*C bytes written and read again) and writes
  ``(exp(x - m)/s - onehot(target[n])) * grad_loss[n]``.

The block's partials are combined through shared memory (``common.block_max`` and
``common.block_sum``), so the kernels run, tested, in Numba's simulator, which has no warp
shuffles. A shuffle version (and a warp-per-row version for C <= a few hundred) is a later rung,
checked on a GPU.

Cost (R rows of C, s = bytes per element):

========================  ================================  =====================================
kernel                    FLOPs (+ transcendentals)         bytes moved (DRAM, ideal)
========================  ================================  =====================================
log_softmax_fwd           ~4*R*C + R*C exp + R log           2*R*C*s
log_softmax_bwd           ~3*R*C + R*C exp                   3*R*C*s
cross_entropy_fwd         ~3*R*C + R*C exp + R log           R*C*s + R*8 (target) + R*s
cross_entropy_bwd         ~5*R*C + R*C exp                   2*R*C*s + R*8 + R*s
========================  ================================  =====================================

Each kernel reads its row two or three times (max, sum, output); the figures count one DRAM
read, assuming a row (C*s bytes per block) stays in L1 or L2 between passes, which holds at the
reference models' sizes (C = 10 classes, V = 10k words: 40 KB per row in float32).

Targets must lie in [0, C). The kernels do not raise (a kernel cannot), and they never read out of
bounds: an out-of-range target gives a NaN loss (forward) or a NaN row (backward).

Test (simulator, no GPU)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_softmax.py

``PTX_SIGNATURES`` at the end lists every kernel and dtype the launchers use on a GPU.
"""
import functools
import math

import numpy as np
from numba import cuda, float32, float64, int64

from . import runtime as rt
from .common import (GPU_THREADS, THREADS, block_max, block_sum, contiguous, max_nan,
                     numba_dtype, row_blocks)

# ---------------------------------------------------------------- kernels
# ``block`` threads per block, a compile-time constant: the size of the shared array ``partial``
# (one slot per thread), which the block reductions of ``common`` read as the tree's width.


def _check_block(block):
    assert block > 0 and block & (block - 1) == 0, "block must be a power of two"


@functools.lru_cache(maxsize=None)
def make_log_softmax_fwd_kernel(block, dtype):
    """``log_softmax_fwd_kernel1``: y[r, j] = (x[r, j] - m) - log(s) for each row r."""
    _check_block(block)
    zero, ninf = dtype(0), dtype(-np.inf)

    @cuda.jit
    def log_softmax_fwd_kernel1(x, y, n_rows, c):
        partial = cuda.shared.array(block, dtype)
        t = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, n_rows, cuda.gridDim.x):
            base = r * c
            m = ninf                                # this thread's max over columns t, t+block..
            for j in range(t, c, block):
                m = max_nan(m, x[base + j])
            m = block_max(partial, t, m)
            acc = zero
            for j in range(t, c, block):
                acc += math.exp(x[base + j] - m)
            log_s = math.log(block_sum(partial, t, acc))   # s >= 1: the max's own term is exp(0)
            for j in range(t, c, block):
                y[base + j] = (x[base + j] - m) - log_s

    return log_softmax_fwd_kernel1


@functools.lru_cache(maxsize=None)
def make_log_softmax_bwd_kernel(block, dtype):
    """``log_softmax_bwd_kernel1``: dx[r, j] = g[r, j] - exp(y[r, j]) * sum_k g[r, k]."""
    _check_block(block)
    zero = dtype(0)

    @cuda.jit
    def log_softmax_bwd_kernel1(grad, y, dx, n_rows, c):
        partial = cuda.shared.array(block, dtype)
        t = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, n_rows, cuda.gridDim.x):
            base = r * c
            acc = zero
            for j in range(t, c, block):
                acc += grad[base + j]
            g_sum = block_sum(partial, t, acc)
            for j in range(t, c, block):
                dx[base + j] = grad[base + j] - math.exp(y[base + j]) * g_sum

    return log_softmax_bwd_kernel1


@functools.lru_cache(maxsize=None)
def make_cross_entropy_fwd_kernel(block, dtype):
    """``cross_entropy_fwd_kernel1``: loss[n] = log(s) - (x[n, target[n]] - m), one kernel."""
    _check_block(block)
    zero, ninf, nan = dtype(0), dtype(-np.inf), dtype(np.nan)

    @cuda.jit
    def cross_entropy_fwd_kernel1(logits, target, loss, n_rows, c):
        partial = cuda.shared.array(block, dtype)
        t = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, n_rows, cuda.gridDim.x):
            base = r * c
            m = ninf
            for j in range(t, c, block):
                m = max_nan(m, logits[base + j])
            m = block_max(partial, t, m)
            acc = zero
            for j in range(t, c, block):
                acc += math.exp(logits[base + j] - m)
            s = block_sum(partial, t, acc)
            if t == 0:                              # one thread per row writes the loss
                k = target[r]
                if k >= 0 and k < c:
                    loss[r] = math.log(s) - (logits[base + k] - m)
                else:
                    loss[r] = nan

    return cross_entropy_fwd_kernel1


@functools.lru_cache(maxsize=None)
def make_cross_entropy_bwd_kernel(block, dtype):
    """``cross_entropy_bwd_kernel1``: recomputes m and s, then
    dx[n, j] = (exp(x[n, j] - m) / s - [j == target[n]]) * grad_loss[n]."""
    _check_block(block)
    zero, one, ninf, nan = dtype(0), dtype(1), dtype(-np.inf), dtype(np.nan)

    @cuda.jit
    def cross_entropy_bwd_kernel1(logits, target, grad_loss, dx, n_rows, c):
        partial = cuda.shared.array(block, dtype)
        t = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, n_rows, cuda.gridDim.x):
            base = r * c
            m = ninf
            for j in range(t, c, block):
                m = max_nan(m, logits[base + j])
            m = block_max(partial, t, m)
            acc = zero
            for j in range(t, c, block):
                acc += math.exp(logits[base + j] - m)
            inv_s = one / block_sum(partial, t, acc)
            k = target[r]
            g = grad_loss[r] if k >= 0 and k < c else nan   # a bad target poisons its row
            for j in range(t, c, block):
                p = math.exp(logits[base + j] - m) * inv_s
                if j == k:
                    p -= one
                dx[base + j] = p * g

    return cross_entropy_bwd_kernel1

# ---------------------------------------------------------------- launchers


def _dtype(x):
    return numba_dtype(x.dtype, "softmax")


def _check_target(logits, target):
    assert logits.ndim == 2, f"cross_entropy: logits must be (N, C), got {logits.shape}"
    assert target.shape == (logits.shape[0],), \
        f"cross_entropy: target {target.shape} is not ({logits.shape[0]},)"
    assert target.dtype == np.int64, f"cross_entropy: target must be int64, not {target.dtype}"


def _launch(make_kernel, dtype, n_rows, *args):
    if n_rows:
        rt.launch(make_kernel(THREADS, dtype), row_blocks(n_rows), THREADS, *args)


def log_softmax_fwd(x):
    """log(softmax(x)) over the last axis, stable: x - max - log(sum(exp(x - max)))."""
    x = contiguous(x)
    c = x.shape[-1]
    n_rows = x.size // c if c else 0
    y = rt.empty(x.shape, x.dtype)
    _launch(make_log_softmax_fwd_kernel, _dtype(x), n_rows, x.reshape(-1), y.reshape(-1),
            n_rows, c)
    return y


def log_softmax_bwd(grad, y):
    """Given y = log_softmax(x): dL/dx = grad - softmax(x) * sum(grad)."""
    assert grad.shape == y.shape and grad.dtype == y.dtype, (grad.shape, y.shape)
    grad, y = contiguous(grad), contiguous(y)
    c = y.shape[-1]
    n_rows = y.size // c if c else 0
    dx = rt.empty(y.shape, y.dtype)
    _launch(make_log_softmax_bwd_kernel, _dtype(y), n_rows, grad.reshape(-1), y.reshape(-1),
            dx.reshape(-1), n_rows, c)
    return dx


def cross_entropy_fwd(logits, target):
    """Per-row loss ``logsumexp(logits[n]) - logits[n, target[n]]`` for logits (N, C)."""
    _check_target(logits, target)
    logits, target = contiguous(logits), contiguous(target)
    n, c = logits.shape
    loss = rt.empty((n,), logits.dtype)
    _launch(make_cross_entropy_fwd_kernel, _dtype(logits), n if c else 0, logits.reshape(-1),
            target, loss, n, c)
    return loss


def cross_entropy_bwd(logits, target, grad_loss):
    """dL/dlogits = (softmax(logits) - onehot(target)) * grad_loss[:, None]."""
    _check_target(logits, target)
    assert grad_loss.shape == target.shape and grad_loss.dtype == logits.dtype, \
        f"cross_entropy_bwd: grad_loss {grad_loss.shape} {grad_loss.dtype}"
    logits, target, grad_loss = contiguous(logits), contiguous(target), contiguous(grad_loss)
    n, c = logits.shape
    dx = rt.empty((n, c), logits.dtype)
    _launch(make_cross_entropy_bwd_kernel, _dtype(logits), n if c else 0, logits.reshape(-1),
            target, grad_loss, dx.reshape(-1), n, c)
    return dx

# ---------------------------------------------------------------- compile check


def _signatures():
    idx = int64[::1]
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            (f"log_softmax_fwd_kernel1_{f}", make_log_softmax_fwd_kernel(GPU_THREADS, f),
             (arr, arr, int64, int64)),
            (f"log_softmax_bwd_kernel1_{f}", make_log_softmax_bwd_kernel(GPU_THREADS, f),
             (arr, arr, arr, int64, int64)),
            (f"cross_entropy_fwd_kernel1_{f}", make_cross_entropy_fwd_kernel(GPU_THREADS, f),
             (arr, idx, arr, int64, int64)),
            (f"cross_entropy_bwd_kernel1_{f}", make_cross_entropy_bwd_kernel(GPU_THREADS, f),
             (arr, idx, arr, arr, int64, int64)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU, at the
# GPU's block size.
PTX_SIGNATURES = _signatures()
