"""Elementwise and broadcasting kernels: unary, binary (with comparisons), pow, relu_bwd, where.

Versions (each family has one so far; later versions stay beside it as the ladder):

- ``unary_fwd_kernel1``: grid-stride loop, one element per thread per step, op chosen by code.
- ``binary_fwd_kernel1`` / ``compare_fwd_kernel1``: NumPy broadcasting. One grid-stride loop over
  the *output*; each output flat index is peeled into coordinates (last dimension first) with the
  per-dimension output sizes, and each coordinate times the input's stride-in-elements (0 on a
  broadcast dimension) gives the input offset. Sizes and strides are small int64 device arrays
  built on the host, coalesced first (size-1 output dims dropped, neighbours merged where every
  input is contiguous across them), so same-shape operands become one dimension and the loop does
  no division at all (the outermost coordinate never needs a ``%``).
- ``binary_scalar_fwd_kernel1`` / ``compare_scalar_fwd_kernel1``: ``b`` a Python scalar, passed as
  a kernel argument of ``a``'s dtype (no device array, no index map).
- ``pow_scalar_fwd_kernel1``, ``relu_bwd_kernel1``: same-shape grid-stride loops.
- ``where_mask_fwd_kernel1`` / ``where_mask_scalar_fwd_kernel1``: ``where`` broadcasting mask, a,
  b like the binary kernel (three inputs); the scalar version takes ``b`` as an argument.

Why an integer op code (a chain of ``if``) rather than one kernel per op from a factory: the code
is the same for every thread of a launch, so the branch is uniform (no divergence) and costs a
few instructions in a kernel bound by memory traffic; it keeps one compiled kernel per dtype
instead of eleven, so fewer JIT compilations at start-up and a short PTX list. The factories
``_make_binary_kernel`` and ``_make_binary_scalar_kernel`` make the arithmetic and the comparison
kernels from one body each, because their outputs have different dtypes (the input's, and bool);
the flag is a compile-time constant and Numba prunes the other op chain.

Each kernel peels its output index into coordinates in one loop that computes the offsets of all
its inputs at once (one division per dimension for two or three operands), which is why they do
not call ``common.strided_offset`` once per operand.

Cost per output element (s = bytes per element of the dtype; n = output elements):

=====================  ================================  =======================================
kernel                 FLOPs                             bytes moved (DRAM, ideal)
=====================  ================================  =======================================
unary                  1 (sigmoid: 3 + one exp; erf, sin, cos ~20)  2*n*s
binary / compare       1                                 n_a*s + n_b*s + n*s_out, s_out = s or 1
binary_scalar          1                                 n*s + n*s_out
pow_scalar             1 pow (~ exp + log + mul)         2*n*s
relu_bwd               1 compare                         3*n*s
where_mask             1 select                          n_mask*1 + n_a*s + n_b*s + n*s
=====================  ================================  =======================================

A broadcast operand is re-read once per output element; the ideal figures assume those re-reads
hit in cache. Indices are int64 throughout (correct past 2**31 elements; 32-bit index arithmetic
is a later version).

Test (simulator, no GPU; tiny odd shapes, a block of 8 threads and at most 4 blocks so the
grid-stride loop wraps)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_elementwise.py

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU, for
the compile check (``cuda.compile_ptx`` for sm_90 and sm_80, then ``ptxas -v``).

``sin`` and ``cos`` give ``unary_fwd_kernel1`` a small stack frame (32 bytes in float32, 40 in
float64 on sm_90): libdevice reduces a large argument through a local array, a path the other
ops never take.

Simulator notes: the simulator evaluates ``math`` functions with Python's ``math``, which raises
where the GPU returns NaN or inf. ``log`` and ``sqrt`` therefore spell out their results at 0 and
below (so both give NumPy's values); ``math.exp`` overflow (arguments past ~709) still raises in
the simulator, and the tests keep ``exp``'s inputs in range.
"""
import functools
import math

import numpy as np
from numba import boolean, cuda, float32, float64, int64

from . import runtime as rt
from .common import THREADS, flat, grid_blocks

# Launch configuration: grid-stride loops, so any grid is correct (``common.grid_blocks``).

UNARY_OPS = {"neg": 0, "exp": 1, "log": 2, "tanh": 3, "sigmoid": 4, "relu": 5, "sqrt": 6, "abs": 7,
             "erf": 8, "sin": 9, "cos": 10}
ARITH_OPS = {"add": 0, "sub": 1, "mul": 2, "div": 3, "maximum": 4, "pow": 5}
COMPARE_OPS = {"eq": 0, "ne": 1, "gt": 2, "ge": 3, "lt": 4, "le": 5}

# ---------------------------------------------------------------- kernels


@cuda.jit
def unary_fwd_kernel1(x, out, n, op):
    zero = x.dtype.type(0)          # constants in x's dtype, so float32 math stays float32
    one = x.dtype.type(1)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = x[i]
        if op == 0:
            r = -v
        elif op == 1:
            r = math.exp(v)
        elif op == 2:
            # log(0) = -inf and log(x < 0) = NaN spelled out: the GPU gives them, the simulator's
            # math.log raises instead.
            if v > zero:
                r = math.log(v)
            else:
                r = x.dtype.type(-math.inf) if v == zero else x.dtype.type(math.nan)
        elif op == 3:
            r = math.tanh(v)
        elif op == 4:
            r = one / (one + math.exp(-v))
        elif op == 5:
            r = zero if v < zero else v         # NaN stays NaN, as np.maximum(x, 0)
        elif op == 6:
            r = math.sqrt(v) if v >= zero else x.dtype.type(math.nan)   # as log, NaN
        elif op == 7:
            r = abs(v)
        elif op == 8:
            r = math.erf(v)                     # libdevice's erf on the GPU
        elif math.isinf(v):
            # sin and cos of an infinity are NaN: spelled out for the simulator, whose math.sin
            # raises on one (the GPU gives NaN anyway).
            r = x.dtype.type(math.nan)
        elif op == 9:
            r = math.sin(v)
        else:
            r = math.cos(v)
        out[i] = r


def _make_binary_kernel(compare):
    """The broadcasting kernel: arithmetic (``compare`` False; output in the inputs' dtype) or
    comparisons (True; bool output). ``compare`` is a compile-time constant, so Numba prunes the
    other chain."""

    @cuda.jit
    def binary_kernel(a, b, out, shape, a_strides, b_strides, n, op):
        ndim = shape.shape[0]
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            # Output coordinates from the flat index, last dimension first; what is left after
            # the inner dimensions is the coordinate along dimension 0 (no % needed).
            rest = i
            ia = 0
            ib = 0
            for d in range(ndim - 1, 0, -1):
                c = rest % shape[d]
                rest //= shape[d]
                ia += c * a_strides[d]
                ib += c * b_strides[d]
            x = a[ia + rest * a_strides[0]]
            y = b[ib + rest * b_strides[0]]
            if compare:
                if op == 0:
                    r = x == y
                elif op == 1:
                    r = x != y
                elif op == 2:
                    r = x > y
                elif op == 3:
                    r = x >= y
                elif op == 4:
                    r = x < y
                else:
                    r = x <= y
            else:
                if op == 0:
                    r = x + y
                elif op == 1:
                    r = x - y
                elif op == 2:
                    r = x * y
                elif op == 3:
                    r = x / y
                elif op == 4:
                    r = x if (x > y or x != x) else y   # np.maximum: a NaN in either wins
                else:
                    r = x ** y
            out[i] = r

    return binary_kernel


def _make_binary_scalar_kernel(compare):
    """``a op s`` for a scalar ``s`` passed as a kernel argument; no index map."""

    @cuda.jit
    def binary_scalar_kernel(a, s, out, n, op):
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            x = a[i]
            if compare:
                if op == 0:
                    r = x == s
                elif op == 1:
                    r = x != s
                elif op == 2:
                    r = x > s
                elif op == 3:
                    r = x >= s
                elif op == 4:
                    r = x < s
                else:
                    r = x <= s
            else:
                if op == 0:
                    r = x + s
                elif op == 1:
                    r = x - s
                elif op == 2:
                    r = x * s
                elif op == 3:
                    r = x / s
                elif op == 4:
                    r = x if (x > s or x != x) else s
                else:
                    r = x ** s
            out[i] = r

    return binary_scalar_kernel


binary_fwd_kernel1 = _make_binary_kernel(compare=False)
compare_fwd_kernel1 = _make_binary_kernel(compare=True)
binary_scalar_fwd_kernel1 = _make_binary_scalar_kernel(compare=False)
compare_scalar_fwd_kernel1 = _make_binary_scalar_kernel(compare=True)


@cuda.jit
def pow_scalar_fwd_kernel1(x, p, out, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = x[i] ** p


@cuda.jit
def relu_bwd_kernel1(grad, y, out, n):
    zero = grad.dtype.type(0)
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        out[i] = zero if y[i] <= zero else grad[i]     # a NaN y passes the gradient, as PyTorch


@cuda.jit
def where_mask_fwd_kernel1(mask, a, b, out, shape, m_strides, a_strides, b_strides, n):
    ndim = shape.shape[0]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        rest = i                                # coordinates as in the binary kernel
        im = 0
        ia = 0
        ib = 0
        for d in range(ndim - 1, 0, -1):
            c = rest % shape[d]
            rest //= shape[d]
            im += c * m_strides[d]
            ia += c * a_strides[d]
            ib += c * b_strides[d]
        im += rest * m_strides[0]
        ia += rest * a_strides[0]
        ib += rest * b_strides[0]
        out[i] = a[ia] if mask[im] else b[ib]


@cuda.jit
def where_mask_scalar_fwd_kernel1(mask, a, s, out, shape, m_strides, a_strides, n):
    ndim = shape.shape[0]
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        rest = i
        im = 0
        ia = 0
        for d in range(ndim - 1, 0, -1):
            c = rest % shape[d]
            rest //= shape[d]
            im += c * m_strides[d]
            ia += c * a_strides[d]
        im += rest * m_strides[0]
        ia += rest * a_strides[0]
        out[i] = a[ia] if mask[im] else s

# ---------------------------------------------------------------- host-side layout


def _contiguous_strides(shape):
    """C strides in elements, 0 on size-1 dimensions (which broadcast)."""
    strides, acc = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = acc if shape[d] != 1 else 0
        acc *= shape[d]
    return strides


@functools.lru_cache(maxsize=512)
def _broadcast_layout(out_shape, in_shapes):
    """Device int64 arrays (sizes, strides of input 0, strides of input 1, ...) mapping each output
    flat index to input offsets. Input shapes are right-aligned and padded with 1s to the output's
    ndim; size-1 output dims are dropped and neighbours merged when, for every input, stepping the
    outer one equals stepping the inner one through its whole size. Cached per shape: the arrays are
    only read, and a training step repeats the same shapes (one upload each, not one per call)."""
    nd = len(out_shape)
    strides = [_contiguous_strides((1,) * (nd - len(s)) + tuple(s)) for s in in_shapes]
    dims = []
    for d in range(nd):
        if out_shape[d] == 1:
            continue
        size, sts = out_shape[d], [st[d] for st in strides]
        if dims and all(p == q * size for p, q in zip(dims[-1][1], sts)):
            dims[-1] = (dims[-1][0] * size, sts)
        else:
            dims.append((size, sts))
    if not dims:                    # a single output element: one dimension of size 1
        dims = [(1, [0] * len(in_shapes))]
    arrays = [np.array([size for size, _ in dims], dtype=np.int64)]
    arrays += [np.array([sts[k] for _, sts in dims], dtype=np.int64) for k in range(len(in_shapes))]
    return tuple(rt.constant(a) for a in arrays)


def _broadcast_shape(*shapes):
    nd = max(len(s) for s in shapes)
    out = []
    for d in range(nd):
        sizes = {s[d - nd + len(s)] for s in shapes if d - nd + len(s) >= 0} - {1}
        assert len(sizes) <= 1, f"shapes {shapes} do not broadcast"
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)

# ---------------------------------------------------------------- launchers


def unary(op, x):
    """``op(x)`` elementwise, ``op`` one of ``UNARY_OPS``; same shape and dtype as ``x``."""
    out = rt.empty(x.shape, x.dtype)
    n = out.size
    if n:
        rt.launch(unary_fwd_kernel1, grid_blocks(n), THREADS, flat(x), out.reshape(-1), n,
                  UNARY_OPS[op])
    return out


def binary(op, a, b):
    """``op(a, b)`` elementwise with NumPy broadcasting; ``b`` may be a Python scalar (taken in
    ``a``'s dtype). Arithmetic keeps the dtype; comparisons return bool."""
    compare = op in COMPARE_OPS
    code = COMPARE_OPS[op] if compare else ARITH_OPS[op]
    if np.isscalar(b):
        out = rt.empty(a.shape, np.bool_ if compare else a.dtype)
        n = out.size
        if n:
            kernel = compare_scalar_fwd_kernel1 if compare else binary_scalar_fwd_kernel1
            rt.launch(kernel, grid_blocks(n), THREADS, flat(a), a.dtype.type(b), out.reshape(-1),
                      n, code)
        return out
    assert a.dtype == b.dtype, f"binary {op}: dtypes differ ({a.dtype}, {b.dtype})"
    shape = _broadcast_shape(a.shape, b.shape)
    out = rt.empty(shape, np.bool_ if compare else a.dtype)
    n = out.size
    if n:
        sizes, a_strides, b_strides = _broadcast_layout(shape, (tuple(a.shape), tuple(b.shape)))
        kernel = compare_fwd_kernel1 if compare else binary_fwd_kernel1
        rt.launch(kernel, grid_blocks(n), THREADS, flat(a), flat(b), out.reshape(-1), sizes,
                  a_strides, b_strides, n, code)
    return out


def pow_scalar(x, p):
    """``x ** p`` elementwise, ``p`` a Python number taken in ``x``'s dtype."""
    out = rt.empty(x.shape, x.dtype)
    n = out.size
    if n:
        rt.launch(pow_scalar_fwd_kernel1, grid_blocks(n), THREADS, flat(x), x.dtype.type(p),
                  out.reshape(-1), n)
    return out


def relu_bwd(grad, y):
    """Gradient of ReLU given its output ``y``: 0 where ``y <= 0``, else ``grad``."""
    assert grad.shape == y.shape, f"relu_bwd: shapes differ ({grad.shape}, {y.shape})"
    out = rt.empty(grad.shape, grad.dtype)
    n = out.size
    if n:
        rt.launch(relu_bwd_kernel1, grid_blocks(n), THREADS, flat(grad), flat(y), out.reshape(-1),
                  n)
    return out


def where_mask(mask, a, b):
    """``a`` where ``mask`` else ``b``, broadcasting all three; ``b`` may be a scalar. The result
    has ``a``'s dtype."""
    if np.isscalar(b):
        shape = _broadcast_shape(mask.shape, a.shape)
        out = rt.empty(shape, a.dtype)
        n = out.size
        if n:
            sizes, m_strides, a_strides = _broadcast_layout(shape, (tuple(mask.shape),
                                                                    tuple(a.shape)))
            rt.launch(where_mask_scalar_fwd_kernel1, grid_blocks(n), THREADS,
                      flat(mask), flat(a), a.dtype.type(b), out.reshape(-1), sizes, m_strides,
                      a_strides, n)
        return out
    assert a.dtype == b.dtype, f"where_mask: dtypes differ ({a.dtype}, {b.dtype})"
    shape = _broadcast_shape(mask.shape, a.shape, b.shape)
    out = rt.empty(shape, a.dtype)
    n = out.size
    if n:
        sizes, m_strides, a_strides, b_strides = _broadcast_layout(
            shape, (tuple(mask.shape), tuple(a.shape), tuple(b.shape)))
        rt.launch(where_mask_fwd_kernel1, grid_blocks(n), THREADS,
                  flat(mask), flat(a), flat(b), out.reshape(-1), sizes, m_strides, a_strides,
                  b_strides, n)
    return out

# ---------------------------------------------------------------- compile check


def _signatures():
    idx = int64[::1]
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            ("unary_fwd_kernel1", unary_fwd_kernel1, (arr, arr, int64, int64)),
            ("binary_fwd_kernel1", binary_fwd_kernel1,
             (arr, arr, arr, idx, idx, idx, int64, int64)),
            ("compare_fwd_kernel1", compare_fwd_kernel1,
             (arr, arr, boolean[::1], idx, idx, idx, int64, int64)),
            ("binary_scalar_fwd_kernel1", binary_scalar_fwd_kernel1, (arr, f, arr, int64, int64)),
            ("compare_scalar_fwd_kernel1", compare_scalar_fwd_kernel1,
             (arr, f, boolean[::1], int64, int64)),
            ("pow_scalar_fwd_kernel1", pow_scalar_fwd_kernel1, (arr, f, arr, int64)),
            ("relu_bwd_kernel1", relu_bwd_kernel1, (arr, arr, arr, int64)),
            ("where_mask_fwd_kernel1", where_mask_fwd_kernel1,
             (boolean[::1], arr, arr, arr, idx, idx, idx, idx, int64)),
            ("where_mask_scalar_fwd_kernel1", where_mask_scalar_fwd_kernel1,
             (boolean[::1], arr, f, arr, idx, idx, idx, int64)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
