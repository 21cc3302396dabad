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
simulator runs them as plain Python. ``block_sum`` and ``block_max`` reduce over a block through
shared memory by a tree, with barriers; ``warp.py`` holds the same two by warp shuffles.

Row walks (``row_walk(version, block)``): how the versions of the row kernels (softmax.py) and of
the reductions (reduce.py) spread their rows over threads, written once for both families. A row
is whatever one result is reduced from (a softmax row, the elements summed into one output):

- v1: one thread per row, a serial loop over the row's elements; no shared memory, no barrier;
- v2: one block per row, thread ``t`` takes elements ``t, t+block, ...``, the block combines its
  partial results by ``block_sum``/``block_max`` (the tree);
- v3: as v2, combined by ``warp.block_sum``/``warp.block_max`` (shuffles, then one shared slot
  per warp).

``ceil_div`` lives in ``runtime`` and is re-exported here.
"""
import functools

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

# ---------------------------------------------------------------- row walks


@cuda.jit(device=True)
def keep(scratch, t, value):
    """v1's "block reduction": the thread already holds its whole row."""
    return value


class RowWalk:
    """How one version spreads rows over threads (see the module docstring). Device functions:
    ``first_row()``, ``row_step()`` (the grid-stride loop over rows), ``first_col()`` (this
    thread's first element of the row; 0 for the thread that writes the row's result), and
    ``row_max(scratch, t, value)``, ``row_sum(...)`` (combine the row's partial results; every
    thread of the block must call them). ``col_step``: the stride between a thread's elements;
    ``scratch``: slots of the shared array the combining needs; ``threads`` per block;
    ``grid(rows)`` blocks for ``rows`` rows."""

    def __init__(self, version, block):
        from . import warp      # here, not at the top: warp imports max_nan from this module
        assert block > 0 and block & (block - 1) == 0, "block must be a power of two"
        self.version, self.threads = version, block
        if version == 1:
            self.first_row, self.row_step, self.first_col = _thread_row, _thread_step, _zero
            self.col_step, self.scratch = 1, 1
            self.row_max = self.row_sum = keep
        else:
            assert version in (2, 3), f"row walks are v1, v2 or v3, not v{version}"
            self.first_row, self.row_step, self.first_col = _block_row, _block_step, _lane
            self.col_step = block
            if version == 2:
                self.scratch, self.row_max, self.row_sum = block, block_max, block_sum
            else:
                assert block % warp.WARP == 0, f"v3: block {block} is not whole warps"
                self.scratch = block // warp.WARP
                self.row_max, self.row_sum = warp.block_max, warp.block_sum

    def grid(self, rows):
        """Blocks for ``rows`` rows: v1 a thread each (a grid-stride loop past ``MAX_BLOCKS``),
        v2 and v3 a block each (past ``MAX_ROW_BLOCKS``)."""
        return grid_blocks(rows) if self.version == 1 else max(1, row_blocks(rows))

    def device(self):
        """(first_row, row_step, first_col, row_max, row_sum): bound to local names before a
        kernel's definition, since a kernel cannot read attributes of a Python object."""
        return self.first_row, self.row_step, self.first_col, self.row_max, self.row_sum


@functools.lru_cache(maxsize=None)
def row_walk(version, block):
    """The ``RowWalk`` of ``version`` (1, 2 or 3) at ``block`` threads per block."""
    return RowWalk(version, block)


@cuda.jit(device=True)
def _thread_row():
    return cuda.grid(1)


@cuda.jit(device=True)
def _thread_step():
    return cuda.gridsize(1)


@cuda.jit(device=True)
def _zero():
    return 0


@cuda.jit(device=True)
def _block_row():
    return cuda.blockIdx.x


@cuda.jit(device=True)
def _block_step():
    return cuda.gridDim.x


@cuda.jit(device=True)
def _lane():
    return cuda.threadIdx.x
