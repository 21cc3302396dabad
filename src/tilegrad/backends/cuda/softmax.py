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
  ``(exp(x - m)/s - onehot(target[n])) * g``. For ``reduction`` 'none' ``g = grad_loss[n]``; for
  'sum' and 'mean' grad_loss holds the one gradient of the reduced loss, which every row reads
  (``grad_loss[n * g_step]`` with ``g_step = 0``) and divides by ``divisor`` (N for 'mean', else
  1): no broadcast, no scaling kernel, and nothing read on the host.
- ``cross_entropy_reduce_fwd_kernel1``: the forward's second launch for 'sum' and 'mean': one
  block; thread ``t`` adds the losses ``t, t+block, ...`` in order, the block's tree
  (``common.block_sum``) adds the partials, thread 0 writes ``total / divisor``. The order of
  additions depends only on N and the block size, so the loss is bit-identical from run to run
  (no float atomics). One block reads N losses: N*s bytes, microseconds at the reference models'
  N (a few thousand rows at most).

Launches per call: ``cross_entropy_fwd`` 1 ('none') or 2 ('sum', 'mean'); ``cross_entropy_bwd`` 1.

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
cross_entropy_reduce_fwd  R adds + 1 division                R*s + s
cross_entropy_bwd         ~5*R*C + R*C exp                   2*R*C*s + R*8 + R*s ('none'), s else
========================  ================================  =====================================

Each kernel reads its row two or three times (max, sum, output); the figures count one DRAM
read, assuming a row (C*s bytes per block) stays in L1 or L2 between passes, which holds at the
reference models' sizes (C = 10 classes, V = 10k words: 40 KB per row in float32).

Targets must lie in [0, C), and the forward kernel checks them: a target outside it is reported
through the runtime's error flag (``common.report_error``, code ``BAD_TARGET``; the first report
wins) and its row gets a NaN loss, and nothing is read out of bounds. The host raises
``IndexRangeError("cross_entropy: target 12 is out of range for 10 classes")`` at the next
synchronisation (``runtime.synchronize``, any copy to the host), not at the call: checking on the
host would read the targets back every step. The backward does not report again; it gives a bad
target's row NaN.

Test (simulator, no GPU)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_softmax.py

``PTX_SIGNATURES`` at the end lists every kernel and dtype the launchers use on a GPU.
"""
import functools
import math

import numpy as np
from numba import cuda, float32, float64, int64

from tilegrad.errors import IndexRangeError

from . import runtime as rt
from .common import (GPU_THREADS, THREADS, block_max, block_sum, contiguous, max_nan,
                     numba_dtype, report_error, row_blocks)

BAD_TARGET = 12       # error code (the runtime's flag): a target outside [0, C); value, bound = C
rt.register_error(BAD_TARGET, lambda value, bound: IndexRangeError(
    f"cross_entropy: target {value} is out of range for {bound} classes"))

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
    def cross_entropy_fwd_kernel1(logits, target, loss, n_rows, c, flag):
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
                else:                               # the host raises at its next sync
                    report_error(flag, BAD_TARGET, k, c)
                    loss[r] = nan

    return cross_entropy_fwd_kernel1


@functools.lru_cache(maxsize=None)
def make_cross_entropy_reduce_fwd_kernel(block, dtype):
    """``cross_entropy_reduce_fwd_kernel1``: out[0] = sum(loss[0:n]) / divisor, one block, in a
    fixed order."""
    _check_block(block)
    zero = dtype(0)

    @cuda.jit
    def cross_entropy_reduce_fwd_kernel1(loss, out, n, divisor):
        partial = cuda.shared.array(block, dtype)
        t = cuda.threadIdx.x
        acc = zero
        for r in range(t, n, block):                # thread t: rows t, t+block, ... in order
            acc += loss[r]
        total = block_sum(partial, t, acc)
        if t == 0:
            out[0] = total / divisor

    return cross_entropy_reduce_fwd_kernel1


@functools.lru_cache(maxsize=None)
def make_cross_entropy_bwd_kernel(block, dtype):
    """``cross_entropy_bwd_kernel1``: recomputes m and s, then
    dx[n, j] = (exp(x[n, j] - m) / s - [j == target[n]]) * grad_loss[n * g_step] / divisor."""
    _check_block(block)
    zero, one, ninf, nan = dtype(0), dtype(1), dtype(-np.inf), dtype(np.nan)

    @cuda.jit
    def cross_entropy_bwd_kernel1(logits, target, grad_loss, dx, n_rows, c, g_step, divisor):
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
            # g_step 1: a gradient per row ('none'); 0: the reduced loss's one gradient, which
            # every row reads, divided by N for 'mean'. A bad target poisons its row.
            g = grad_loss[r * g_step] / divisor if k >= 0 and k < c else nan
            for j in range(t, c, block):
                p = math.exp(logits[base + j] - m) * inv_s
                if j == k:
                    p -= one
                dx[base + j] = p * g

    return cross_entropy_bwd_kernel1

# ---------------------------------------------------------------- launchers


def _dtype(x):
    return numba_dtype(x.dtype, "softmax")


def _check_target(logits, target, reduction):
    assert logits.ndim == 2, f"cross_entropy: logits must be (N, C), got {logits.shape}"
    assert target.shape == (logits.shape[0],), \
        f"cross_entropy: target {target.shape} is not ({logits.shape[0]},)"
    assert target.dtype == np.int64, f"cross_entropy: target must be int64, not {target.dtype}"
    assert reduction in ("none", "sum", "mean"), f"cross_entropy: reduction {reduction!r}"


def _divisor(logits, reduction):
    """What the summed loss (or its gradient) is divided by: N for 'mean', else 1, as a scalar
    of the logits' dtype (so that the kernel compiles for that dtype only)."""
    return logits.dtype.type(logits.shape[0] if reduction == "mean" else 1)


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


def cross_entropy_fwd(logits, target, reduction="none"):
    """Per-row loss ``logsumexp(logits[n]) - logits[n, target[n]]`` for logits (N, C): the N
    losses for ``reduction`` 'none', else their sum or their sum / N (0-d). A target outside
    [0, C) is reported by the kernel: IndexRangeError at the next sync."""
    _check_target(logits, target, reduction)
    logits, target = contiguous(logits), contiguous(target)
    n, c = logits.shape
    dtype = _dtype(logits)
    losses = rt.empty((n,), logits.dtype)
    # Launched for C = 0 too: every target is then out of range, and the kernel says so.
    _launch(make_cross_entropy_fwd_kernel, dtype, n, logits.reshape(-1), target, losses, n, c,
            rt.expect_errors())
    if reduction == "none":
        return losses
    out = rt.empty((), logits.dtype)
    rt.launch(make_cross_entropy_reduce_fwd_kernel(THREADS, dtype), 1, THREADS, losses,
              out.reshape(1), n, _divisor(logits, reduction))
    return out


def cross_entropy_bwd(logits, target, grad_loss, reduction="none"):
    """dL/dlogits = (softmax(logits) - onehot(target)) * g[:, None]: g = grad_loss (N,) for
    'none'; for 'sum' and 'mean' grad_loss is the reduced loss's gradient (one element, read
    on the device), divided by N for 'mean'."""
    _check_target(logits, target, reduction)
    per_row = reduction == "none"
    assert grad_loss.dtype == logits.dtype and (
        grad_loss.shape == target.shape if per_row else grad_loss.size == 1), \
        f"cross_entropy_bwd: grad_loss {grad_loss.shape} {grad_loss.dtype} for {reduction!r}"
    logits, target, grad_loss = contiguous(logits), contiguous(target), contiguous(grad_loss)
    n, c = logits.shape
    dx = rt.empty((n, c), logits.dtype)
    _launch(make_cross_entropy_bwd_kernel, _dtype(logits), n if c else 0, logits.reshape(-1),
            target, grad_loss.reshape(-1), dx.reshape(-1), n, c, int(per_row),
            _divisor(logits, reduction))
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
             (arr, idx, arr, int64, int64, idx)),
            (f"cross_entropy_reduce_fwd_kernel1_{f}",
             make_cross_entropy_reduce_fwd_kernel(GPU_THREADS, f), (arr, arr, int64, f)),
            (f"cross_entropy_bwd_kernel1_{f}", make_cross_entropy_bwd_kernel(GPU_THREADS, f),
             (arr, idx, arr, arr, int64, int64, int64, f)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU, at the
# GPU's block size.
PTX_SIGNATURES = _signatures()
