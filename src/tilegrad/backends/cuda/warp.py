"""Warp shuffles, and the block reductions built on them (version 3 of the softmax and reduce
kernels).

A warp is ``WARP`` threads (32 on a GPU) that issue together. ``cuda.shfl_xor_sync(mask, v, k)``
hands lane ``l`` the ``v`` of lane ``l ^ k``, register to register: no shared memory and no
barrier. Five such exchanges, k = 16, 8, 4, 2, 1 (a butterfly), leave every lane holding the
sum of the warp's 32 values (``warp_sum``) or their maximum (``warp_max``).

``block_sum(totals, t, value)`` and ``block_max`` reduce over the whole block: each warp reduces
its lanes by the butterfly, lane 0 of warp ``w`` writes the warp's result to ``totals[w]`` (shared
memory, one slot per warp: 8 slots for a block of 256), a barrier, then every thread combines the
slots in warp order, and a last barrier lets the caller write ``totals`` again. Two barriers per
reduction, where the shared-memory tree (``common.block_sum``) takes log2(block) + 2 = 10 at 256
threads, each with a shared load and store per level. The block size must be a multiple of
``WARP``, so that no warp is partial (a shuffle from a lane that does not exist is undefined on a
GPU); the kernel factories assert it.

Deterministic: the order of additions depends only on the block size and ``WARP``. Every lane
of a warp ends the butterfly with the same bits, because at each step lanes l and l ^ k add the
same two numbers (IEEE addition is commutative); only lane 0's result is published anyway. The
result differs in its last bits from the tree's (another order), not from run to run.

The simulator has no warp shuffles. Under ``NUMBA_ENABLE_CUDASIM=1`` ``shfl_xor`` is a stand-in
that exchanges through a shared array: each thread writes its value to slot ``threadIdx.x``, a
barrier, it reads slot ``threadIdx.x ^ k`` (within its warp), a barrier. Its semantics are the
GPU's where the GPU defines them (lane ``l`` gets lane ``l ^ k``'s value); where the source lane
does not exist (a partial last warp) it keeps its own value, where the GPU's result is undefined.
Restriction: **every thread of the block must call it** (it has barriers), where on a GPU only
the lanes in the mask must. The simulator's warp is ``WARP = 4`` lanes, so that its blocks of 8
threads have two warps and the cross-warp step runs too.

Gap: the GPU implementation (the two ``cuda.shfl_xor_sync`` lines) never runs in the simulator.
It is compiled for sm_90 and sm_80 by the PTX check (the v3 kernels of ``softmax.py`` and
``reduce.py`` call it) and runs only on a GPU (``make gpu-check``). Numba shuffles 32- and 64-bit
integers and floats only: the reduce launchers run bool through v2.
"""
import numpy as np
from numba import cuda

from . import runtime as rt
from .common import max_nan

WARP = 4 if rt.SIMULATOR else 32       # lanes per warp (the simulator's stand-in: see above)
FULL_MASK = 0xFFFFFFFF                 # every lane of the warp takes part in each shuffle

if rt.SIMULATOR:
    @cuda.jit(device=True)
    def shfl_xor(value, lane_mask):
        """The simulator's stand-in for ``cuda.shfl_xor_sync(FULL_MASK, value, lane_mask)``:
        every thread of the block must call it."""
        t = cuda.threadIdx.x
        n = cuda.blockDim.x
        # One slot per thread, of the value's own dtype (float32, int64, bool pass unchanged).
        # The simulator makes one array per launch and source line, which every thread of the
        # block then shares; its dtype is the first shuffled value's: a kernel shuffles one.
        lanes = cuda.shared.array(n, np.asarray(value).dtype)
        lanes[t] = value
        cuda.syncthreads()                 # every value written before any is read
        source = t - t % WARP + (t % WARP ^ lane_mask)
        got = lanes[source] if (t % WARP ^ lane_mask) < WARP and source < n else value
        cuda.syncthreads()                 # every value read before the next call writes
        return got
else:
    @cuda.jit(device=True)
    def shfl_xor(value, lane_mask):
        """Lane ``l`` gets lane ``l ^ lane_mask``'s ``value``, in registers."""
        return cuda.shfl_xor_sync(FULL_MASK, value, lane_mask)


@cuda.jit(device=True)
def warp_sum(value):
    """The sum of ``value`` over the warp's lanes, in every lane (a butterfly of shuffles)."""
    k = WARP // 2
    while k > 0:                           # WARP is a constant: the loop is unrolled
        value += shfl_xor(value, k)
        k //= 2
    return value


@cuda.jit(device=True)
def warp_max(value):
    """The maximum of ``value`` over the warp's lanes (NaN wins, as ``common.max_nan``)."""
    k = WARP // 2
    while k > 0:
        value = max_nan(value, shfl_xor(value, k))
        k //= 2
    return value


@cuda.jit(device=True)
def block_sum(totals, t, value):
    """The sum of ``value`` over the block, returned to every thread; ``totals`` is a shared
    array of one slot per warp, ``t`` is ``cuda.threadIdx.x``. All threads of the block must
    call it; the block size must be a multiple of ``WARP``."""
    w = warp_sum(value)
    if t % WARP == 0:
        totals[t // WARP] = w
    cuda.syncthreads()                     # every warp's total written before any is read
    total = totals[0]
    for i in range(1, totals.shape[0]):    # in warp order: deterministic
        total += totals[i]
    cuda.syncthreads()                     # every total read before the caller writes again
    return total


@cuda.jit(device=True)
def block_max(totals, t, value):
    """The maximum of ``value`` over the block (NaN wins), as ``block_sum``."""
    w = warp_max(value)
    if t % WARP == 0:
        totals[t // WARP] = w
    cuda.syncthreads()
    top = totals[0]
    for i in range(1, totals.shape[0]):
        top = max_nan(top, totals[i])
    cuda.syncthreads()
    return top
