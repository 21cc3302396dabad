"""Random numbers drawn on the device: dropout's mask from a counter-based generator whose state
lives in device memory, so that a training step that drops out can be captured as a CUDA graph and
replayed (each replay draws new numbers, and the same ones as eager calls from the same state).

The generator is Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; the generator of cuRAND and PyTorch's CUDA dropout): ten rounds that turn a 128-bit
counter and a 64-bit key into four 32-bit words, every word a function of the counter alone, so
any thread can draw any number without a sequence to step through. Each round multiplies two
32-bit words into 64-bit products (``mulhilo``) and mixes their halves with the others and the
key; the key is bumped by two Weyl constants between rounds. All of it is uint64 arithmetic on
values below 2**32 (products below 2**64), so nothing overflows, in Numba, in NumPy's vectorised
specification (``numpy.dropout_fwd``) and in the simulator, which runs it on NumPy scalars.

The state is a uint64 array of three: ``[seed, offset, blocks done]``. Draw number ``offset + i``
is word ``(offset + i) % 4`` of Philox at counter ``(offset + i) // 4`` (low 32 bits in the
counter's word 0, high 32 bits in word 1, words 2 and 3 zero) under key ``seed`` (low, high).
Each call draws ``n`` numbers and advances the offset by ``n`` rounded up to a multiple of 4 (so
an offset is always a whole counter). The NumPy backend keeps the same state in a NumPy array:
from the same state both backends draw the same masks.

Versions:

- ``dropout_fwd_kernel1``: a grid-stride loop over groups of four elements; thread group ``q``
  computes Philox once for counter ``offset/4 + q`` and writes elements ``4q .. 4q+3``: element i
  is kept where its word ``r >= threshold = ceil(p * 2**32)`` (probability ``1 - p`` up to
  2**-32), ``y[i] = x[i] * (scale if kept else 0)`` with ``scale = 1/(1-p)`` in x's dtype (so
  ``inf`` or NaN dropped gives NaN, as ``x * mask`` in PyTorch), and ``mask[i] = kept`` (bool).
  The offset advances in the same launch, race-free: thread 0 of each block reads ``seed`` and
  ``offset`` into shared memory before a barrier, then adds 1 to ``state[2]`` atomically
  (after a fence); the block that reads ``gridDim - 1`` there is the last to have read the
  offset, so it alone writes ``offset + draws`` and resets ``state[2]`` to 0. No block reads the
  offset after that write, and the next launch on the stream sees it.
- ``dropout_bwd_kernel1``: ``grad_x[i] = grad[i] * (scale if mask[i] else 0)``.

Cost per element (n elements, s = bytes per element of x):

=========  ========================================  ========================================
kernel     work                                      bytes moved (DRAM, ideal)
=========  ========================================  ========================================
forward    10 Philox rounds per 4 elements (2 wide   n*s read, n*s + n (mask) written
           multiplies, 4 xors each), 1 multiply
backward   1 multiply                                n*s + n read, n*s written
=========  ========================================  ========================================

Test (simulator, no GPU; 8 threads and at most 4 blocks, so the grid-stride loop wraps and
several blocks race for the offset)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_dropout.py

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU.
"""
import math

import numpy as np
from numba import boolean, cuda, float32, float64, int64, uint64

from . import runtime as rt
from .common import THREADS, ceil_div, flat, grid_blocks, numba_dtype

# Philox4x32's multipliers and key bumps (Random123), and the shifts and masks it uses. NumPy
# uint64 scalars: Numba freezes them as uint64 constants, so no int64 mixes in (which Numba would
# promote to float64), and the simulator computes in uint64 as the GPU does.
PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = np.uint64(0x9E3779B9)
PHILOX_W1 = np.uint64(0xBB67AE85)
PHILOX_ROUNDS = 10
LOW32 = np.uint64(0xFFFFFFFF)
U32 = np.uint64(32)
U2 = np.uint64(2)
U1 = np.uint64(1)
U0 = np.uint64(0)

# ---------------------------------------------------------------- device functions


@cuda.jit(device=True)
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of the counter words ``c0..c3`` under the key words ``k0, k1``: four
    uint64 holding 32-bit words. ``M * c`` of two 32-bit values is the 64-bit product; its high
    half (``>> 32``) and low half (``& LOW32``) are mulhilo's two results."""
    for r in range(PHILOX_ROUNDS):
        if r > 0:                                   # the key is bumped between rounds
            k0 = (k0 + PHILOX_W0) & LOW32
            k1 = (k1 + PHILOX_W1) & LOW32
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        c0, c1, c2, c3 = ((p1 >> U32) ^ c1 ^ k0, p1 & LOW32,
                          (p0 >> U32) ^ c3 ^ k1, p0 & LOW32)
    return c0, c1, c2, c3


@cuda.jit(device=True)
def drop(x, y, mask, i, r, threshold, scale, zero):
    """Element ``i`` of dropout, whose draw is ``r``: kept (``y = x * scale``) if
    ``r >= threshold``, else ``y = x * 0``."""
    keep = r >= threshold
    y[i] = x[i] * (scale if keep else zero)
    mask[i] = keep

# ---------------------------------------------------------------- kernels


@cuda.jit
def dropout_fwd_kernel1(x, y, mask, state, threshold, scale, draws, n):
    # state = [seed, offset, blocks done]; threshold = ceil(p * 2**32); draws = n rounded up to 4.
    seen = cuda.shared.array(2, uint64)      # this block's copy of seed and offset
    t = cuda.threadIdx.x
    if t == 0:
        seen[0] = state[0]
        seen[1] = state[1]
    cuda.syncthreads()                        # thread 0 has its values before it reports below
    if t == 0:
        cuda.threadfence()
        done = cuda.atomic.add(state, 2, U1)  # blocks that have read the offset before this one
        if done == uint64(cuda.gridDim.x - 1):
            state[1] = seen[1] + draws        # the last reader advances the offset
            state[2] = U0
    k0 = seen[0] & LOW32
    k1 = seen[0] >> U32
    base = seen[1] >> U2                      # the first counter of this call (offset / 4)
    zero = scale - scale
    for q in range(cuda.grid(1), (n + 3) // 4, cuda.gridsize(1)):
        # Thread group q: Philox at counter base + q gives the draws of elements 4q .. 4q+3.
        ctr = base + uint64(q)
        r0, r1, r2, r3 = philox4x32(ctr & LOW32, ctr >> U32, U0, U0, k0, k1)
        i = 4 * q
        drop(x, y, mask, i, r0, threshold, scale, zero)
        if i + 1 < n:
            drop(x, y, mask, i + 1, r1, threshold, scale, zero)
        if i + 2 < n:
            drop(x, y, mask, i + 2, r2, threshold, scale, zero)
        if i + 3 < n:
            drop(x, y, mask, i + 3, r3, threshold, scale, zero)


@cuda.jit
def dropout_bwd_kernel1(grad, mask, out, scale, n):
    zero = scale - scale
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = grad[i] * (scale if mask[i] else zero)

# ---------------------------------------------------------------- launchers


def _check_state(state):
    assert state.dtype == np.uint64 and state.shape == (3,), \
        f"dropout: the generator state is a uint64 array of 3, not {state.dtype} {state.shape}"


def dropout_fwd(x, p, state):
    """``(y, mask)``: each element of ``x`` kept with probability ``1 - p`` and scaled by
    ``1/(1-p)``, else zeroed; ``mask`` (bool) says which were kept. The draws come from the
    generator ``state`` (``[seed, offset, 0]``, uint64, on the device), whose offset advances on
    the device. ``0 <= p < 1``; float32 or float64."""
    assert 0 <= p < 1, f"dropout_fwd: p must lie in [0, 1), got {p}"
    _check_state(state)
    dtype = x.dtype.type
    numba_dtype(x.dtype, "dropout_fwd")
    y = rt.empty(tuple(x.shape), x.dtype)
    mask = rt.empty(tuple(x.shape), np.bool_)
    n = x.size
    if n:
        groups = ceil_div(n, 4)
        rt.launch(dropout_fwd_kernel1, grid_blocks(groups), THREADS,
                  flat(x), y.reshape(-1), mask.reshape(-1), state,
                  np.uint64(math.ceil(p * 2.0 ** 32)), dtype(1 / (1 - p)),
                  np.uint64(4 * groups), n)
    return y, mask


def dropout_bwd(grad, mask, p):
    """``grad * mask / (1 - p)``, the scale taken in grad's dtype as in the forward."""
    assert 0 <= p < 1, f"dropout_bwd: p must lie in [0, 1), got {p}"
    assert tuple(grad.shape) == tuple(mask.shape), \
        f"dropout_bwd: grad {grad.shape} and mask {mask.shape} differ"
    numba_dtype(grad.dtype, "dropout_bwd")
    out = rt.empty(tuple(grad.shape), grad.dtype)
    n = grad.size
    if n:
        rt.launch(dropout_bwd_kernel1, grid_blocks(n), THREADS,
                  flat(grad), flat(mask), out.reshape(-1), grad.dtype.type(1 / (1 - p)), n)
    return out

# ---------------------------------------------------------------- compile check


def _signatures():
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            (f"dropout_fwd_kernel1_{f}", dropout_fwd_kernel1,
             (arr, arr, boolean[::1], uint64[::1], uint64, f, uint64, int64)),
            (f"dropout_bwd_kernel1_{f}", dropout_bwd_kernel1,
             (arr, boolean[::1], arr, f, int64)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and signature the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
