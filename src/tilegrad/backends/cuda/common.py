"""What the kernel families share, written once: launch sizes, grids, dtypes, flat views, and the
device functions for block reductions and strided offsets.

Launch sizes. ``THREADS`` threads per block: 256 on a GPU, 8 in Numba's simulator, where each CUDA
thread is a Python thread (few threads, so that a block's threads each hold several elements and
a block reduction's tree still has three levels). Grid-stride loops cap the grid at
``MAX_BLOCKS``, block-per-row kernels (reduce, softmax) at ``MAX_ROW_BLOCKS``; both are 4 in the
simulator so that the loops wrap. ``GPU_THREADS`` is the GPU's value, for the compile check
(``PTX_SIGNATURES``), which builds the GPU's kernels whether or not the simulator is on.

Device functions (``cuda.jit(device=True)``) are compiled into each kernel that calls them; the
compile check (``ptx.py``) builds them for its target compute capability without a GPU, and the
simulator runs them as plain Python. The block reductions go through shared memory by a tree,
with barriers, because the simulator has no warp shuffles; a shuffle version is a GPU-only rung.

``ceil_div`` lives in ``runtime`` and is re-exported here.
"""
import numpy as np
from numba import boolean, cuda, float32, float64, int64, uint32

from . import runtime as rt
from .runtime import ceil_div   # also re-exported: the families import launch helpers from here

GPU_THREADS = 256
THREADS = 8 if rt.SIMULATOR else GPU_THREADS        # threads per block
MAX_BLOCKS = 4 if rt.SIMULATOR else 8192            # grid of a grid-stride loop, at most
MAX_ROW_BLOCKS = 4 if rt.SIMULATOR else 65535       # grid of a block-per-row kernel, at most

# numpy dtype -> Numba type. NUMBA_DTYPES: the float dtypes the arithmetic kernels compile for;
# NUMBA_STORAGE_DTYPES adds int64 and bool, which the kernels that only move data also take.
NUMBA_DTYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}
NUMBA_STORAGE_DTYPES = {**NUMBA_DTYPES, np.dtype(np.int64): int64, np.dtype(np.bool_): boolean}

# ---------------------------------------------------------------- host side


def grid_blocks(n):
    """Blocks of ``THREADS`` for a grid-stride loop over ``n`` elements: one element per thread
    up to ``MAX_BLOCKS`` blocks (then each thread loops), at least one."""
    return max(1, min(ceil_div(n, THREADS), MAX_BLOCKS))


def row_blocks(n_rows):
    """Blocks for a kernel that gives each row a block (a grid-stride loop over rows)."""
    return min(n_rows, MAX_ROW_BLOCKS)


def numba_dtype(dtype, what):
    """The Numba float type of ``dtype``; ``what`` names the kernels in the message otherwise."""
    assert dtype in NUMBA_DTYPES, f"{what} kernels take float32 or float64, not {dtype}"
    return NUMBA_DTYPES[dtype]


def contiguous(x):
    """``x`` if it is C-contiguous, else a C-contiguous copy."""
    return x if x.flags.c_contiguous else rt.copy(x)


def flat(x):
    """A 1-D C-contiguous view of ``x`` (of a copy if ``x`` is not C-contiguous)."""
    return contiguous(x).reshape(-1)

# ---------------------------------------------------------------- device functions


@cuda.jit(device=True)
def max_nan(acc, v):
    """``v`` if it beats the running maximum ``acc``, else ``acc``: a NaN ``v`` wins and a NaN
    ``acc`` stays, so a NaN anywhere gives NaN, as ``np.max``."""
    return v if v > acc or v != v else acc


@cuda.jit(device=True)
def block_sum(partial, t, value):
    """The sum of ``value`` over the block's threads, returned to every thread.

    ``partial`` is a shared array of one slot per thread (its length, a power of two, is the
    block size); ``t`` is ``cuda.threadIdx.x``. Thread t writes its value to partial[t]; at each
    level the lower half adds the upper half into itself (partial[t] += partial[t + half]), a
    barrier between levels so that a level reads only finished writes. Every thread then reads
    partial[0], and a last barrier lets the caller write ``partial`` again (its next reduction or
    row). The order of additions depends only on the block size: the result is deterministic.
    All threads of the block must call it.
    """
    partial[t] = value
    cuda.syncthreads()
    half = partial.shape[0] // 2
    while half > 0:
        if t < half:
            partial[t] += partial[t + half]
        cuda.syncthreads()
        half //= 2
    total = partial[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def block_max(partial, t, value):
    """The maximum of ``value`` over the block's threads (NaN wins, as ``max_nan``), returned to
    every thread; the tree and barriers of ``block_sum``."""
    partial[t] = value
    cuda.syncthreads()
    half = partial.shape[0] // 2
    while half > 0:
        if t < half:
            v = partial[t + half]
            if v > partial[t] or v != v:
                partial[t] = v
        cuda.syncthreads()
        half //= 2
    top = partial[0]
    cuda.syncthreads()
    return top


@cuda.jit(device=True)
def strided_offset(base, i, sizes, strides):
    """``base`` plus the offset, in elements, of flat index ``i`` of an index space of ``sizes``
    (C order) whose dimensions step ``strides`` elements: ``i`` peeled into coordinates, last
    dimension first; what is left after the inner dimensions is the coordinate along dimension 0
    (no ``%``). The sum starts from ``base``: adding ``base`` afterwards cost reduce's kernels
    2-6 more registers."""
    rest = i
    off = base
    for d in range(sizes.shape[0] - 1, 0, -1):
        off += (rest % sizes[d]) * strides[d]
        rest //= sizes[d]
    return off + rest * strides[0]


@cuda.jit(device=True)
def udivmod(a, b):
    """``(a // b, a % b)`` for ``0 <= a, b < 2**32``, in 32-bit unsigned arithmetic: a 64-bit
    division is a call to a software routine (``__cuda_sm20_div_s64``, dozens of instructions),
    a 32-bit unsigned one a short inline sequence. Returned as int64, so that the results mix
    with signed index arithmetic (a coordinate minus the padding may be negative)."""
    ua, ub = uint32(a), uint32(b)
    q = uint32(ua // ub)
    return int64(q), int64(uint32(ua - q * ub))


def epilogue(has_bias, relu, zero):
    """Device function for a GEMM's finished output in column j: + bias[j], then max(., 0).
    ``has_bias`` and ``relu`` are compile-time constants; ``zero`` is the dtype's 0."""
    @cuda.jit(device=True)
    def finish(acc, bias, j):
        if has_bias:
            acc += bias[j]
        if relu and acc < zero:
            acc = zero
        return acc
    return finish



@cuda.jit(device=True)
def report_error(flag, code, value, bound):
    """Report bad input to the host: ``flag`` is ``runtime.expect_errors()`` (int64, 4 slots).
    The first report wins (compare-and-swap on the code); ``value`` and ``bound`` go with it into
    the error message (the bad index and the count it must stay under, say). The caller then
    skips the element instead of reading out of bounds."""
    if cuda.atomic.cas(flag, 0, 0, code) == 0:
        flag[1] = value
        flag[2] = bound
