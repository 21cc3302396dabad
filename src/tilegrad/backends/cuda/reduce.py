"""Reductions: sum, amax and argmax over any set of axes. Sum and amax are the kernel family
"reduce", a ladder of three versions; argmax has one.

The host views the input with the reduced axes innermost without moving data: it splits the
axes into kept and reduced, each with sizes and strides in elements (coalesced: size-1 axes
dropped, neighbours merged where contiguous), as small int64 device arrays cached per shape.
Output ``o``'s base offset comes from the kept sizes and strides, reduced index ``r``'s offset
from the reduced ones (``common.strided_offset``). Each output is a "row" of ``n_red`` elements,
and the versions spread rows over threads as the softmax kernels do (``common.row_walk``); the
kernels are made by ``make_sum_kernel(version, block)`` and ``make_amax_kernel(version, block)``,
named ``sum_fwd_kernel<version>`` and ``amax_fwd_kernel<version>``:

- v1, one thread per output, a serial loop over its reduced elements; no shared memory, no
  barrier. Coalesced when the reduced axes are not the innermost (a bias gradient, the sum over
  the batch axis: consecutive threads read consecutive outputs' elements), strided by ``n_red``
  when they are (the sum of each row); few threads when there are few outputs (a sum over
  everything runs on one thread).
- v2, the default, one block per output (a grid-stride loop over outputs): thread ``t`` takes
  reduced indices ``t, t+block, ...``, the block combines its partials by a tree in shared
  memory (``common.block_sum``, ``common.block_max``: log2(block) + 2 barriers).
- v3: v2 with the partials combined by warp shuffles (``warp.block_sum``,
  ``warp.block_max``: 5 register exchanges a warp, 8 shared slots, 2 barriers at 256 threads).
  Numba shuffles 32- and 64-bit values only, so v3 runs bool inputs through v2's kernel.

Every version adds in an order that depends only on the shape, the block size and the version
(no atomics), so a result is bit-identical from run to run; versions differ from each other in
the last bits of a sum. v3 should be the fastest of the three (the fewest instructions and
barriers per output at the same DRAM traffic as v2, and as deterministic), but its shuffles run
only on a GPU, and none has run them yet: v2, which has, stays the default until ``make
gpu-check`` confirms v3. v1 beats both when the reduced axes are outer and
the outputs many (bias gradients: a thread per output reads coalesced, a block per output reads
one element per thread per stride); choosing by layout is a later rung ("auto").

Known gap: few outputs with long reductions use few blocks (a reduction over all axes runs on
one block, or on one thread in v1); a two-pass split of long reductions is the next rung.

Why not a host-side array of base offsets, one per output: its upload would be O(outputs) bytes
per call; the kept sizes and strides are a few integers, cached, and the division to decode them
is paid once per output, not per element. The reduced space is decoded per element, which costs
nothing after coalescing in the common cases (the last axis, or the leading axis of a contiguous
array, is one dimension and needs no ``%``).

Cost (n = input elements, m = outputs, s = bytes per element), the same for every version:
sum n adds (v2 adds m*(block-1) in the trees, v3 as many, in shuffles); amax, argmax n compares.
Bytes moved: n*s read + m*s written (argmax: m*8 written). What differs is how fast they move:
v1 reads each output's elements from one thread (uncoalesced for an innermost reduction), v2 and
v3 from a block.

``argmax_fwd_kernel1`` (``make_argmax_kernel(block)``): one version, built like v2 (a block per
output, a tree over (value, index) pairs in shared memory). It stays outside the ladder: it runs
once per evaluation batch, not per training step.

Semantics match the NumPy backend: ``amax`` propagates NaN; ``argmax`` returns the first index of
the maximum (a NaN counts as the maximum, the first one wins), as int64; reducing over no axes
copies; ``amax``/``argmax`` over an empty axis raise, as NumPy does. The running maximum starts
at ``lowest``, a kernel argument in the input's dtype (-inf, or the smallest integer, or False), so
that integer and bool inputs reduce too.

``VERSIONS`` maps "v1", "v2", "v3" to each version's ``Launchers`` (sum, amax); the backend calls
those of the version in use (``tilegrad.kernels.launcher("reduce")``), and so do this module's
``sum`` and ``amax``, which other families' launchers call (conv's bias gradient).

Test (simulator, no GPU)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_elementwise.py \
        tests/test_cuda_reduce_versions.py
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int64

from tilegrad import kernels

from . import runtime as rt
from .common import GPU_THREADS, THREADS, max_nan, row_blocks, row_walk, strided_offset

FAMILY = "reduce"
SHUFFLED = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))   # v3's dtypes

# ---------------------------------------------------------------- kernels
# Each factory binds its version's row walk (``common.row_walk``) to local names, as softmax.py's
# do: ``first_row``/``row_step`` walk the outputs, ``r0``/``step`` this thread's reduced indices,
# ``row_sum``/``row_max`` combine an output's partials through ``scratch`` (``slots`` long).


def _check_block(block):
    assert block > 0 and block & (block - 1) == 0, "block must be a power of two"


def _named(kernel, name):
    kernel.__name__ = kernel.__qualname__ = name
    return cuda.jit(kernel)


@functools.lru_cache(maxsize=None)
def make_sum_kernel(version, block):
    """``sum_fwd_kernel<version>`` for a power-of-two ``block`` of threads."""
    walk = row_walk(version, block)
    first_row, row_step, first_col, _, row_sum = walk.device()
    step, slots = walk.col_step, walk.scratch

    def kernel(x, out, kept_sizes, kept_strides, red_sizes, red_strides, n_out, n_red):
        scratch = cuda.shared.array(slots, x.dtype)
        t = cuda.threadIdx.x
        r0 = first_col()
        for o in range(first_row(), n_out, row_step()):
            base = strided_offset(0, o, kept_sizes, kept_strides)
            acc = x.dtype.type(0)
            for r in range(r0, n_red, step):
                acc += x[strided_offset(base, r, red_sizes, red_strides)]
            total = row_sum(scratch, t, acc)
            if r0 == 0:                     # the output's first thread writes it
                out[o] = total

    return _named(kernel, f"sum_fwd_kernel{version}")


@functools.lru_cache(maxsize=None)
def make_amax_kernel(version, block):
    """``amax_fwd_kernel<version>``: as the sum kernel, with a max that lets a NaN win (and
    stay)."""
    walk = row_walk(version, block)
    first_row, row_step, first_col, row_max, _ = walk.device()
    step, slots = walk.col_step, walk.scratch

    def kernel(x, out, kept_sizes, kept_strides, red_sizes, red_strides, n_out, n_red, lowest):
        scratch = cuda.shared.array(slots, x.dtype)
        t = cuda.threadIdx.x
        r0 = first_col()
        for o in range(first_row(), n_out, row_step()):
            base = strided_offset(0, o, kept_sizes, kept_strides)
            acc = lowest
            for r in range(r0, n_red, step):
                acc = max_nan(acc, x[strided_offset(base, r, red_sizes, red_strides)])
            top = row_max(scratch, t, acc)
            if r0 == 0:
                out[o] = top

    return _named(kernel, f"amax_fwd_kernel{version}")


@functools.lru_cache(maxsize=None)
def make_argmax_kernel(block):
    """``argmax_fwd_kernel1``: (value, index) pairs in two shared arrays; the index is the flat
    index in the reduced space (for one axis, the index along it). A pair (v, i) beats (w, j) when
    v is larger, or v is NaN and w is not, or they are equal (or both NaN) and i < j: the first
    maximum, a NaN counting as the maximum, as np.argmax. The tree over pairs is written out here
    (the shape of ``common.block_max``'s): no other kernel reduces pairs."""
    _check_block(block)

    @cuda.jit
    def argmax_fwd_kernel1(x, out, kept_sizes, kept_strides, red_sizes, red_strides, n_out,
                           n_red, lowest):
        vals = cuda.shared.array(block, x.dtype)
        idxs = cuda.shared.array(block, int64)
        t = cuda.threadIdx.x
        for o in range(cuda.blockIdx.x, n_out, cuda.gridDim.x):
            base = strided_offset(0, o, kept_sizes, kept_strides)
            acc = lowest
            acc_i = n_red                   # past the end: a real index wins any tie with it
            for r in range(t, n_red, block):
                v = x[strided_offset(base, r, red_sizes, red_strides)]
                if (v != v and (acc == acc or r < acc_i)) or \
                        (acc == acc and (v > acc or (v == acc and r < acc_i))):
                    acc = v
                    acc_i = r
            vals[t] = acc
            idxs[t] = acc_i
            cuda.syncthreads()
            half = block // 2
            while half > 0:
                if t < half:
                    v, i = vals[t + half], idxs[t + half]
                    w, j = vals[t], idxs[t]
                    if (v != v and (w == w or i < j)) or (w == w and (v > w or (v == w and i < j))):
                        vals[t] = v
                        idxs[t] = i
                cuda.syncthreads()
                half //= 2
            if t == 0:
                out[o] = idxs[0]
            cuda.syncthreads()

    return argmax_fwd_kernel1

# ---------------------------------------------------------------- host-side layout


@functools.lru_cache(maxsize=512)
def _reduce_layout(shape, axes):
    """Device int64 arrays (kept sizes, kept strides, reduced sizes, reduced strides) of a
    C-contiguous array of ``shape`` reduced over ``axes``; cached per (shape, axes)."""
    strides = rt.c_strides(shape)
    kept = rt.coalesce([(shape[d], strides[d]) for d in range(len(shape)) if d not in axes])
    red = rt.coalesce([(shape[d], strides[d]) for d in axes])
    arrays = [np.array([p[k] for p in dims], dtype=np.int64)
              for dims in (kept, red) for k in (0, 1)]
    return tuple(rt.constant(a) for a in arrays)


def _normalize(axes, ndim):
    axes = tuple(range(ndim)) if axes is None else (axes,) if np.isscalar(axes) else tuple(axes)
    return tuple(sorted(int(a) % max(ndim, 1) for a in axes)) if ndim else ()


def _lowest(dtype):
    """The start of a running maximum in ``dtype``: -inf for floats, the smallest integer, False
    (-inf itself does not convert to an integer or bool)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype.type(-np.inf)
    return dtype.type(False) if dtype.kind == "b" else dtype.type(np.iinfo(dtype).min)


def _reduce(version, make_kernel, x, axes, keepdims, out_dtype):
    """``make_kernel``'s reduction of ``x`` over ``axes``; ``version`` None for argmax."""
    shape = tuple(x.shape)
    axes = _normalize(axes, len(shape))
    kept_shape = tuple(1 if d in axes else n for d, n in enumerate(shape))
    out_shape = kept_shape if keepdims else tuple(n for d, n in enumerate(shape) if d not in axes)
    n_out = int(np.prod(out_shape, dtype=np.int64))
    n_red = int(np.prod([shape[d] for d in axes], dtype=np.int64))
    if n_red == 0 and make_kernel is not make_sum_kernel:
        raise ValueError(f"cannot reduce an empty axis of shape {shape} over axes {axes}")
    out = rt.empty(out_shape, out_dtype)
    if n_out:
        if not x.flags.c_contiguous:
            x = rt.copy(x)
        layout = _reduce_layout(shape, axes)
        extra = () if make_kernel is make_sum_kernel else (_lowest(x.dtype),)
        if version is None:
            kernel, grid, threads = make_kernel(THREADS), row_blocks(n_out), THREADS
        else:
            if version == 3 and x.dtype not in SHUFFLED:
                version = 2                 # Numba shuffles 32- and 64-bit values only
            walk = row_walk(version, THREADS)
            kernel, grid, threads = make_kernel(version, THREADS), walk.grid(n_out), THREADS
        rt.launch(kernel, grid, threads, x.reshape(-1), out.reshape(-1), *layout, n_out, n_red,
                  *extra)
    return out

# ---------------------------------------------------------------- launchers


class Launchers:
    """The launchers of one version (1, 2 or 3): what ``kernels.launcher(FAMILY)`` returns."""

    def __init__(self, version):
        self.version = version

    def __repr__(self):
        return f"<{FAMILY} v{self.version}>"

    def sum(self, x, axes, keepdims):
        """Sum over ``axes`` (a tuple, possibly empty); same dtype as ``x``."""
        return _reduce(self.version, make_sum_kernel, x, axes, keepdims, x.dtype)

    def amax(self, x, axes, keepdims):
        """Maximum over ``axes`` (NaN propagates)."""
        return _reduce(self.version, make_amax_kernel, x, axes, keepdims, x.dtype)


VERSIONS = {f"v{n}": Launchers(n) for n in (1, 2, 3)}
KERNEL_FAMILIES = {FAMILY: (VERSIONS, "v2")}   # v3 once a GPU has run it


def sum(x, axes, keepdims):
    """Sum over ``axes`` with the version in use."""
    return kernels.launcher(FAMILY).sum(x, axes, keepdims)


def amax(x, axes, keepdims):
    """Maximum over ``axes`` with the version in use."""
    return kernels.launcher(FAMILY).amax(x, axes, keepdims)


def argmax(x, axis, keepdims):
    """Index of the first maximum along ``axis`` (an int; None for the flat index), int64."""
    return _reduce(None, make_argmax_kernel, x, axis, keepdims, np.int64)

# ---------------------------------------------------------------- compile check


def _signatures():
    idx = int64[::1]
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        common = (idx, idx, idx, idx, int64, int64)
        for version in (1, 2, 3):
            sigs += [(f"sum_fwd_kernel{version}", make_sum_kernel(version, GPU_THREADS),
                      (arr, arr) + common),
                     (f"amax_fwd_kernel{version}", make_amax_kernel(version, GPU_THREADS),
                      (arr, arr) + common + (f,))]
        sigs.append(("argmax_fwd_kernel1", make_argmax_kernel(GPU_THREADS),
                     (arr, idx) + common + (f,)))
    return sigs


# (name, kernel, numba signature) for every kernel, version and dtype the launchers use on a
# GPU, at the GPU's block size. The names repeat for float32 and float64.
PTX_SIGNATURES = _signatures()
LAUNCH_BLOCKS = {name: GPU_THREADS for name, _, _ in PTX_SIGNATURES}   # threads, for sass.py
