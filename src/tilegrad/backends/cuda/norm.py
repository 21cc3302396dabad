"""Batch normalisation and layer normalisation, forward and backward: the kernel family "norm".

Each normalisation is a reduction (the statistics) followed by an elementwise pass, so each is
one kernel with one block per reduced group, a grid-stride loop over the groups past
``MAX_ROW_BLOCKS``, the block's partial sums combined by ``common.block_sum`` (a tree in shared
memory):

- ``batch_norm_fwd_kernel1``: a block per channel c of x (N, C, L). The channel's n = N*L elements
  are flat indices ``i = b*L + k`` (b the sample, k the position in it), element
  ``x[b*C*L + c*L + k]``; thread t takes ``i = t, t + block, ...`` (consecutive threads read
  consecutive positions of a sample: coalesced when L is large; for BatchNorm1d's (N, C) input,
  L = 1, reads are C elements apart). Three passes: the sum (mean), the sum of squared deviations
  (biased variance, two-pass: no cancellation), then ``y = (x - mean) * invstd * w + b``. Thread
  0 writes mean and invstd and updates the running statistics in place (momentum; unbiased
  variance ``var * n / (n - 1)``).
- ``batch_norm_bwd_kernel1``: a block per channel; one pass sums ``grad`` and
  ``grad * (x - mean)`` (two block sums), a second writes
  ``dx = w * invstd * (grad - sum(grad) / n - xhat * sum(grad * xhat) / n)``; thread 0 writes
  ``dweight = sum(grad * xhat)`` and ``dbias = sum(grad)``.
- ``layer_norm_fwd_kernel1``: a block per row of x (M, D), contiguous: mean, variance, then y,
  as the batch-norm forward; thread 0 writes mean and rstd.
- ``layer_norm_bwd_kernel1``: a block per row: ``gw = grad * w``, two block sums, then
  ``dx = rstd * (gw - sum(gw) / D - xhat * sum(gw * xhat) / D)``.
- ``layer_norm_param_bwd_kernel1``: a thread per column j (grid-stride over D): it walks the M rows
  and sums ``grad * xhat`` (dweight) and ``grad`` (dbias); consecutive threads read consecutive
  columns (coalesced). Its parallelism is D threads: enough for wide rows, poor for D of a few
  dozen with many rows, where a next rung would split the rows among blocks and add the partial
  sums in a second launch.

Every sum is accumulated in float64, the shared tree too, for float32 inputs as well (as the
NumPy specification): these kernels are bound by memory traffic, and a float64 add per element
is cheap next to a load even where float64 arithmetic is slow. The elementwise results are
computed in float64 and rounded to the input's dtype. The order of additions depends only on the
sizes and the block size: results are bit-identical from run to run (no atomics).

Optional operands (weight, bias, the running statistics) are passed as a one-element placeholder
with a flag, so that one compiled kernel serves every combination.

Cost, s bytes per element, each pass after the first assumed to hit L2 for a group that fits
(a channel of 64 x 32 x 32 float32 is 256 KB; otherwise each pass reads DRAM again):

=====================  =========================  =========================================
kernel                 FLOPs                      bytes moved (DRAM, ideal; x and y dominate)
=====================  =========================  =========================================
batch_norm_fwd         ~7 per element             2*N*C*L*s (read x, write y) + 4*C*s
batch_norm_bwd         ~9 per element             3*N*C*L*s (read grad and x, write dx)
layer_norm_fwd         ~7 per element             2*M*D*s + 2*M*s
layer_norm_bwd         ~10 per element            3*M*D*s
layer_norm_param_bwd   ~4 per element             2*M*D*s + 2*D*s
=====================  =========================  =========================================

Composed from the primitives instead (a mean, a subtraction, a square, a mean, a sqrt, a
division, a product and a sum, each a launch that reads and writes whole tensors), the forward
moves about 10 tensors' worth of bytes and the backward about 15; these move 2 and 3 (5 for the
layer norm backward with its parameter pass): about 5x less traffic, so about 5x faster on a
memory-bound GPU (a prediction from the byte counts, not a measurement).

Flat indices stay under 2**32 (``udivmod``'s 32-bit division); the launchers check it.

Test (simulator, no GPU)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_norm.py

``PTX_SIGNATURES`` at the end lists every kernel and dtype the launchers use on a GPU.
"""
import functools
import math

from numba import cuda, float32, float64, int64

from . import runtime as rt
from .common import (GPU_THREADS, THREADS, block_sum, contiguous, grid_blocks, numba_dtype,
                     row_blocks, udivmod)

# ---------------------------------------------------------------- kernels
# Each factory makes its kernel for one block size (the shared array's length) and dtype. The
# grid-stride loop over groups (channels, rows) is ``for g in range(blockIdx.x, groups,
# gridDim.x)``; within a group thread t takes elements t, t + block, ...


def _named(kernel, op):
    """``kernel`` compiled under the name ``<op>_kernel1`` (what PTX and SASS show)."""
    kernel.__name__ = kernel.__qualname__ = f"{op}_kernel1"
    return cuda.jit(kernel)


@functools.lru_cache(maxsize=None)
def make_batch_norm_fwd_kernel(block, dtype):
    """``batch_norm_fwd_kernel1``: y = (x - mean) * invstd * w + b per channel of x (N, C, L)."""
    zero, one = float64(0), float64(1)

    def kernel(x, weight, bias, y, mean, invstd, run_mean, run_var, nb, c, span, momentum, eps,
               flags):
        scratch = cuda.shared.array(block, float64)
        t = cuda.threadIdx.x
        n = nb * span                   # elements per channel (span: L)
        has_w, has_b, update = flags & 1, flags & 2, flags & 4
        for ch in range(cuda.blockIdx.x, c, cuda.gridDim.x):
            acc = zero
            for i in range(t, n, block):
                b, k = udivmod(i, span)
                acc += x[(b * c + ch) * span + k]
            m = block_sum(scratch, t, acc) / n
            acc = zero
            for i in range(t, n, block):
                b, k = udivmod(i, span)
                d = x[(b * c + ch) * span + k] - m
                acc += d * d
            var = block_sum(scratch, t, acc) / n
            inv = one / math.sqrt(var + eps)
            scale = inv * weight[ch] if has_w else inv
            shift = float64(bias[ch]) if has_b else zero
            for i in range(t, n, block):
                b, k = udivmod(i, span)
                at = (b * c + ch) * span + k
                y[at] = dtype((x[at] - m) * scale + shift)
            if t == 0:
                mean[ch] = dtype(m)
                invstd[ch] = dtype(inv)
                if update:
                    unbiased = var * n / (n - 1) if n > 1 else var
                    run_mean[ch] = dtype((one - momentum) * run_mean[ch] + momentum * m)
                    run_var[ch] = dtype((one - momentum) * run_var[ch] + momentum * unbiased)

    return _named(kernel, "batch_norm_fwd")


@functools.lru_cache(maxsize=None)
def make_batch_norm_bwd_kernel(block, dtype):
    """``batch_norm_bwd_kernel1``: dx, dweight, dbias of the training-mode batch norm."""
    zero = float64(0)

    def kernel(grad, x, weight, mean, invstd, dx, dweight, dbias, nb, c, span, has_w):
        scratch = cuda.shared.array(block, float64)
        t = cuda.threadIdx.x
        n = nb * span
        for ch in range(cuda.blockIdx.x, c, cuda.gridDim.x):
            m, inv = float64(mean[ch]), float64(invstd[ch])
            sg, sgx = zero, zero
            for i in range(t, n, block):
                b, k = udivmod(i, span)
                at = (b * c + ch) * span + k
                g = grad[at]
                sg += g
                sgx += g * (x[at] - m)
            sg = block_sum(scratch, t, sg)
            sgx = block_sum(scratch, t, sgx) * inv          # sum(grad * xhat)
            scale = inv * weight[ch] if has_w else inv
            # The two means once, out of the loop: a float64 division per element would call
            # the slow division routine in the hot loop (as layer_norm_bwd does it too).
            mg, mgx = sg / n, sgx / n
            for i in range(t, n, block):
                b, k = udivmod(i, span)
                at = (b * c + ch) * span + k
                xhat = (x[at] - m) * inv
                dx[at] = dtype(scale * (grad[at] - mg - xhat * mgx))
            if t == 0:
                dweight[ch] = dtype(sgx)
                dbias[ch] = dtype(sg)

    return _named(kernel, "batch_norm_bwd")


@functools.lru_cache(maxsize=None)
def make_layer_norm_fwd_kernel(block, dtype):
    """``layer_norm_fwd_kernel1``: y = (x - mean) * rstd * w + b for each row of x (M, D)."""
    zero, one = float64(0), float64(1)

    def kernel(x, weight, bias, y, mean, rstd, rows, d, eps, flags):
        scratch = cuda.shared.array(block, float64)
        t = cuda.threadIdx.x
        has_w, has_b = flags & 1, flags & 2
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            base = r * d
            acc = zero
            for j in range(t, d, block):
                acc += x[base + j]
            m = block_sum(scratch, t, acc) / d
            acc = zero
            for j in range(t, d, block):
                dev = x[base + j] - m
                acc += dev * dev
            inv = one / math.sqrt(block_sum(scratch, t, acc) / d + eps)
            for j in range(t, d, block):
                v = (x[base + j] - m) * inv
                if has_w:
                    v *= weight[j]
                if has_b:
                    v += bias[j]
                y[base + j] = dtype(v)
            if t == 0:
                mean[r] = dtype(m)
                rstd[r] = dtype(inv)

    return _named(kernel, "layer_norm_fwd")


@functools.lru_cache(maxsize=None)
def make_layer_norm_bwd_kernel(block, dtype):
    """``layer_norm_bwd_kernel1``: dx of each row."""
    zero = float64(0)

    def kernel(grad, x, weight, mean, rstd, dx, rows, d, has_w):
        scratch = cuda.shared.array(block, float64)
        t = cuda.threadIdx.x
        for r in range(cuda.blockIdx.x, rows, cuda.gridDim.x):
            base = r * d
            m, inv = float64(mean[r]), float64(rstd[r])
            s1, s2 = zero, zero
            for j in range(t, d, block):
                gw = float64(grad[base + j])
                if has_w:
                    gw *= weight[j]
                s1 += gw
                s2 += gw * (x[base + j] - m)
            s1 = block_sum(scratch, t, s1) / d                # mean(gw)
            s2 = block_sum(scratch, t, s2) * inv / d          # mean(gw * xhat)
            for j in range(t, d, block):
                gw = float64(grad[base + j])
                if has_w:
                    gw *= weight[j]
                dx[base + j] = dtype(inv * (gw - s1 - (x[base + j] - m) * inv * s2))

    return _named(kernel, "layer_norm_bwd")


@functools.lru_cache(maxsize=None)
def make_layer_norm_param_bwd_kernel(dtype):
    """``layer_norm_param_bwd_kernel1``: dweight[j] = sum_r grad * xhat, dbias[j] = sum_r grad."""
    zero = float64(0)

    def kernel(grad, x, mean, rstd, dweight, dbias, rows, d):
        for j in range(cuda.grid(1), d, cuda.gridsize(1)):
            sw, sb = zero, zero
            for r in range(rows):
                g = float64(grad[r * d + j])
                sw += g * (x[r * d + j] - mean[r]) * rstd[r]
                sb += g
            dweight[j] = dtype(sw)
            dbias[j] = dtype(sb)

    return _named(kernel, "layer_norm_param_bwd")

# ---------------------------------------------------------------- launchers


def _dtype(x):
    return numba_dtype(x.dtype, "norm")


def _optional(a, c, dtype, what):
    """(array, present): ``a`` made contiguous, or a one-element placeholder if it is None."""
    if a is None:
        return rt.empty((1,), dtype), 0
    assert a.shape == (c,) and a.dtype == dtype, f"{what}: shape {a.shape} {a.dtype}, not ({c},)"
    return contiguous(a), 1


def _check_size(x, op):
    assert x.size < 2 ** 32, f"{op}: {x.size} elements; the kernels index below 2**32"


def batch_norm_fwd(x, weight, bias, running_mean, running_var, momentum, eps):
    """Batch normalisation of x (N, C, L) with each channel's batch statistics; returns
    ``(y, mean, invstd)`` and updates running_mean and running_var (C,) in place if given."""
    assert x.ndim == 3, f"batch_norm_fwd: x must be (N, C, L), got {x.shape}"
    _check_size(x, "batch_norm_fwd")
    x = contiguous(x)
    nb, c, span = x.shape
    w, has_w = _optional(weight, c, x.dtype, "batch_norm_fwd: weight")
    b, has_b = _optional(bias, c, x.dtype, "batch_norm_fwd: bias")
    rm, update = _optional(running_mean, c, x.dtype, "batch_norm_fwd: running_mean")
    rv, _ = _optional(running_var, c, x.dtype, "batch_norm_fwd: running_var")
    if update:      # written in place: the caller's arrays themselves
        assert rm is running_mean and rv is running_var, "batch_norm_fwd: running stats copied"
    y = rt.empty(x.shape, x.dtype)
    mean, invstd = rt.empty((c,), x.dtype), rt.empty((c,), x.dtype)
    if c:
        rt.launch(make_batch_norm_fwd_kernel(THREADS, _dtype(x)), row_blocks(c), THREADS,
                  x.reshape(-1), w, b, y.reshape(-1), mean, invstd, rm, rv, nb, c, span,
                  float(momentum or 0.0), float(eps), has_w | has_b << 1 | update << 2)
    return y, mean, invstd


def batch_norm_bwd(grad, x, weight, mean, invstd):
    """dx, dweight, dbias of ``batch_norm_fwd`` (training mode) from dL/dy (N, C, L)."""
    assert grad.shape == x.shape and x.ndim == 3, f"batch_norm_bwd: {grad.shape}, {x.shape}"
    _check_size(x, "batch_norm_bwd")
    grad, x, mean, invstd = contiguous(grad), contiguous(x), contiguous(mean), contiguous(invstd)
    nb, c, span = x.shape
    w, has_w = _optional(weight, c, x.dtype, "batch_norm_bwd: weight")
    dx = rt.empty(x.shape, x.dtype)
    dweight, dbias = rt.empty((c,), x.dtype), rt.empty((c,), x.dtype)
    if c:
        rt.launch(make_batch_norm_bwd_kernel(THREADS, _dtype(x)), row_blocks(c), THREADS,
                  grad.reshape(-1), x.reshape(-1), w, mean, invstd, dx.reshape(-1), dweight,
                  dbias, nb, c, span, has_w)
    return dx, dweight, dbias


def layer_norm_fwd(x, weight, bias, eps):
    """Layer normalisation of each row of x (M, D); returns ``(y, mean, rstd)``."""
    assert x.ndim == 2, f"layer_norm_fwd: x must be (M, D), got {x.shape}"
    x = contiguous(x)
    rows, d = x.shape
    w, has_w = _optional(weight, d, x.dtype, "layer_norm_fwd: weight")
    b, has_b = _optional(bias, d, x.dtype, "layer_norm_fwd: bias")
    y = rt.empty(x.shape, x.dtype)
    mean, rstd = rt.empty((rows,), x.dtype), rt.empty((rows,), x.dtype)
    if rows:     # D = 0 too: mean 0/0 = NaN, as the specification
        rt.launch(make_layer_norm_fwd_kernel(THREADS, _dtype(x)), row_blocks(rows), THREADS,
                  x.reshape(-1), w, b, y.reshape(-1), mean, rstd, rows, d, float(eps),
                  has_w | has_b << 1)
    return y, mean, rstd


def layer_norm_bwd(grad, x, weight, mean, rstd):
    """dx, dweight, dbias of ``layer_norm_fwd`` from dL/dy (M, D): two launches, a block per row
    (dx) and a thread per column (dweight, dbias)."""
    assert grad.shape == x.shape and x.ndim == 2, f"layer_norm_bwd: {grad.shape}, {x.shape}"
    grad, x, mean, rstd = contiguous(grad), contiguous(x), contiguous(mean), contiguous(rstd)
    rows, d = x.shape
    w, has_w = _optional(weight, d, x.dtype, "layer_norm_bwd: weight")
    dx = rt.empty(x.shape, x.dtype)
    dweight, dbias = rt.zeros((d,), x.dtype), rt.zeros((d,), x.dtype)
    if rows and d:
        dt = _dtype(x)
        rt.launch(make_layer_norm_bwd_kernel(THREADS, dt), row_blocks(rows), THREADS,
                  grad.reshape(-1), x.reshape(-1), w, mean, rstd, dx.reshape(-1), rows, d, has_w)
        rt.launch(make_layer_norm_param_bwd_kernel(dt), grid_blocks(d), THREADS,
                  grad.reshape(-1), x.reshape(-1), mean, rstd, dweight, dbias, rows, d)
    return dx, dweight, dbias

# ---------------------------------------------------------------- compile check


def _signatures():
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        for op, kernel, sig in (
                ("batch_norm_fwd", make_batch_norm_fwd_kernel(GPU_THREADS, f),
                 (arr,) * 8 + (int64,) * 3 + (float64, float64, int64)),
                ("batch_norm_bwd", make_batch_norm_bwd_kernel(GPU_THREADS, f),
                 (arr,) * 8 + (int64,) * 4),
                ("layer_norm_fwd", make_layer_norm_fwd_kernel(GPU_THREADS, f),
                 (arr,) * 6 + (int64, int64, float64, int64)),
                ("layer_norm_bwd", make_layer_norm_bwd_kernel(GPU_THREADS, f),
                 (arr,) * 6 + (int64,) * 3),
                ("layer_norm_param_bwd", make_layer_norm_param_bwd_kernel(f),
                 (arr,) * 6 + (int64,) * 2)):
            sigs.append((f"{op}_kernel1_{f}", kernel, sig))
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU, at the
# GPU's block size.
PTX_SIGNATURES = _signatures()
LAUNCH_BLOCKS = {name: GPU_THREADS for name, _, _ in PTX_SIGNATURES}   # threads, for sass.py
