"""Reductions: sum, amax and argmax over any set of axes.

Versions:

- ``sum_fwd_kernel1`` (``make_sum_kernel(block)``), ``amax_fwd_kernel1``
  (``make_amax_kernel(block)``), ``argmax_fwd_kernel1`` (``make_argmax_kernel(block)``): one block
  per output element (a grid-stride loop over outputs when there are more outputs than blocks).
  The host views the input with the reduced axes innermost without moving data: it splits the
  axes into kept and reduced, each with sizes and strides in elements (coalesced: size-1 axes
  dropped, neighbours merged where contiguous), as small int64 device arrays cached per shape.
  For output ``o`` the block finds its base offset from the kept sizes and strides; thread ``t``
  sums reduced indices ``t, t+block, ...`` (offsets from the reduced sizes and strides), then the
  block combines its ``block`` partials by a tree in shared memory. The order of additions depends
  only on the shape and ``block``: the sum is deterministic (no atomics). ``block`` is a
  compile-time constant (the shared array's size and the tree's depth): 256 on a GPU, 8 in the
  simulator so that every thread holds several elements and the tree has three levels.

Why not a host-side array of base offsets, one per output: its upload would be O(outputs) bytes
per call; the kept sizes and strides are a few integers, cached, and the division to decode them
is paid once per output (per block), not per element. The reduced space is decoded per element,
which costs nothing after coalescing in the common cases (the last axis, or the leading axis of a
contiguous array, is one dimension and needs no ``%``).

Known gap (a later version): few outputs with long reductions use few blocks (a reduction over
all axes runs on one block); many outputs with short reductions leave threads idle. A two-pass
split of long reductions and a warp-per-output version for short ones are the next rungs.

Cost (n = input elements, m = outputs, s = bytes per element):
sum: n adds (plus m*(block-1) in the trees); amax, argmax: n compares.
Bytes moved: n*s read + m*s written (argmax: m*8 written).

Semantics match the NumPy backend: ``amax`` propagates NaN; ``argmax`` returns the first index of
the maximum (a NaN counts as the maximum, the first one wins), as int64; reducing over no axes
copies; ``amax``/``argmax`` over an empty axis raise, as NumPy does. The running maximum starts
at ``lowest``, a kernel argument in the input's dtype (-inf, or the smallest integer, or False), so
that integer and bool inputs reduce too.

Test (simulator, no GPU)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_elementwise.py
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int64

from . import runtime as rt
from .common import GPU_THREADS, THREADS, block_max, block_sum, max_nan, row_blocks, strided_offset

# ---------------------------------------------------------------- kernels
# ``block`` threads per block, a compile-time constant: the size of the shared arrays (one slot
# per thread), which the block reductions of ``common`` read as the tree's width.
#
# Offsets (``common.strided_offset``): output o's base offset from the kept sizes and strides,
# then, from that base, reduced index r's offset from the reduced ones.


def _check_block(block):
    assert block > 0 and block & (block - 1) == 0, "block must be a power of two"


@functools.lru_cache(maxsize=None)
def make_sum_kernel(block):
    """``sum_fwd_kernel1`` for a power-of-two ``block`` of threads."""
    _check_block(block)

    @cuda.jit
    def sum_fwd_kernel1(x, out, kept_sizes, kept_strides, red_sizes, red_strides, n_out, n_red):
        partial = cuda.shared.array(block, x.dtype)   # one running sum per thread
        t = cuda.threadIdx.x
        for o in range(cuda.blockIdx.x, n_out, cuda.gridDim.x):
            base = strided_offset(0, o, kept_sizes, kept_strides)
            acc = x.dtype.type(0)
            for r in range(t, n_red, block):           # thread t: reduced indices t, t+block, ...
                acc += x[strided_offset(base, r, red_sizes, red_strides)]
            total = block_sum(partial, t, acc)
            if t == 0:
                out[o] = total

    return sum_fwd_kernel1


@functools.lru_cache(maxsize=None)
def make_amax_kernel(block):
    """``amax_fwd_kernel1``: as the sum kernel, with a max that lets a NaN win (and stay)."""
    _check_block(block)

    @cuda.jit
    def amax_fwd_kernel1(x, out, kept_sizes, kept_strides, red_sizes, red_strides, n_out, n_red,
                         lowest):
        partial = cuda.shared.array(block, x.dtype)
        t = cuda.threadIdx.x
        for o in range(cuda.blockIdx.x, n_out, cuda.gridDim.x):
            base = strided_offset(0, o, kept_sizes, kept_strides)
            acc = lowest
            for r in range(t, n_red, block):
                acc = max_nan(acc, x[strided_offset(base, r, red_sizes, red_strides)])
            top = block_max(partial, t, acc)
            if t == 0:
                out[o] = top

    return amax_fwd_kernel1


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


sum_fwd_kernel1 = make_sum_kernel(THREADS)
amax_fwd_kernel1 = make_amax_kernel(THREADS)
argmax_fwd_kernel1 = make_argmax_kernel(THREADS)

# ---------------------------------------------------------------- host-side layout


@functools.lru_cache(maxsize=512)
def _reduce_layout(shape, axes):
    """Device int64 arrays (kept sizes, kept strides, reduced sizes, reduced strides) of a
    C-contiguous array of ``shape`` reduced over ``axes``; cached per (shape, axes)."""
    strides = rt.c_strides(shape)
    kept = rt.coalesce([(shape[d], strides[d]) for d in range(len(shape)) if d not in axes])
    red = rt.coalesce([(shape[d], strides[d]) for d in axes])
    arrays = [np.array([p[k] for p in dims], dtype=np.int64) for dims in (kept, red) for k in (0, 1)]
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


def _reduce(make_kernel, x, axes, keepdims, out_dtype):
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
        rt.launch(make_kernel(THREADS), row_blocks(n_out), THREADS, x.reshape(-1),
                  out.reshape(-1), *layout, n_out, n_red, *extra)
    return out

# ---------------------------------------------------------------- launchers


def sum(x, axes, keepdims):
    """Sum over ``axes`` (a tuple, possibly empty); same dtype as ``x``."""
    return _reduce(make_sum_kernel, x, axes, keepdims, x.dtype)


def amax(x, axes, keepdims):
    """Maximum over ``axes`` (NaN propagates)."""
    return _reduce(make_amax_kernel, x, axes, keepdims, x.dtype)


def argmax(x, axis, keepdims):
    """Index of the first maximum along ``axis`` (an int; None for the flat index), int64."""
    return _reduce(make_argmax_kernel, x, axis, keepdims, np.int64)

# ---------------------------------------------------------------- compile check


def _signatures():
    idx = int64[::1]
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        common = (idx, idx, idx, idx, int64, int64)
        sigs += [
            ("sum_fwd_kernel1", make_sum_kernel(GPU_THREADS), (arr, arr) + common),
            ("amax_fwd_kernel1", make_amax_kernel(GPU_THREADS), (arr, arr) + common + (f,)),
            ("argmax_fwd_kernel1", make_argmax_kernel(GPU_THREADS), (arr, idx) + common + (f,)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU; the
# factory-made kernels at the GPU's block size.
PTX_SIGNATURES = _signatures()
