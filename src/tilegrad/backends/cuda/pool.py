"""2-D max pooling: forward with the argmax of each window, backward by scattering to it.

Versions:

- ``max_pool2d_fwd_kernel1``: one thread per output element (grid-stride loop over
  ``N*C*Ho*Wo``). The thread peels its flat index into (plane ``nc``, row ``i``, column ``j``),
  walks its ``KH x KW`` window in row-major order, reads taps outside the input as ``-inf`` (the
  padding) and keeps the first maximum: a later tap replaces it only if strictly greater, or if it
  is NaN and the maximum so far is not (``np.argmax`` counts the first NaN as the maximum). It
  writes the maximum and its flat index ``row*W + col`` into the input's ``H*W`` plane (int64).
- ``max_pool2d_bwd_kernel1``: one thread per output element; it adds its gradient into a zeroed
  input gradient at ``nc*H*W + argmax`` with ``cuda.atomic.add`` (float32 and float64 atomics both
  exist on sm_60+).

Why a scatter with atomics and not a gather per input element: the backward's arguments are the
specification's ``(grad_out, argmax, x_shape)``, with no kernel, stride or padding, so an input
element cannot know which outputs' windows cover it; a gather would have to scan every output of
its plane. The scatter needs only the argmax. Its price: where windows overlap (stride < kernel)
two outputs can share a maximum, and the order of their atomic adds (so the float rounding of the
sum) varies from run to run. With stride >= kernel no two outputs share an input element and the
result is deterministic. A gather taking the geometry as extra arguments would be the
deterministic next rung.

Cost (n = N*C*H*W inputs, m = N*C*Ho*Wo outputs, k = KH*KW, s = bytes per element):

==========  ====================  =================================================
kernel      FLOPs                 bytes moved (DRAM, ideal)
==========  ====================  =================================================
forward     m*k compares          n*s read (windows re-read from cache) + m*(s + 8)
backward    m adds (atomic)       m*(s + 8) read + n*s zeroed + m*s read-modify-write
==========  ====================  =================================================

Indices are int64 throughout. The forward matches the NumPy backend, including the corner where
a window holds only ``-inf`` and padding: the first tap (maybe a padded one) is the argmax. Such
an argmax lies outside the plane; the backward does not handle it (NumPy's ``np.add.at`` wraps a
negative index; the kernel would add outside the plane), so inputs of ``-inf`` are out of scope.

Test (simulator, no GPU; tiny odd shapes, 8 threads and at most 4 blocks so the grid-stride loop
wraps)::

    NUMBA_ENABLE_CUDASIM=1 PYTHONPATH=src:tests python -m pytest -q tests/test_cuda_pool.py

``PTX_SIGNATURES`` at the end lists every kernel and signature the launchers use on a GPU.
"""
import math

import numpy as np
from numba import cuda, float32, float64, int64

from . import runtime as rt
from .common import THREADS, flat, grid_blocks

# Grid-stride loops, so any grid is correct (``common.grid_blocks``).

# ---------------------------------------------------------------- kernels


@cuda.jit
def max_pool2d_fwd_kernel1(x, out, argmax, h, w, ho, wo, kh, kw, sh, sw, ph, pw, n_out):
    neg_inf = -x.dtype.type(math.inf)
    for o in range(cuda.grid(1), n_out, cuda.gridsize(1)):
        # o = ((nc * Ho) + i) * Wo + j: output row i, column j of plane nc = n*C + c.
        j = o % wo
        t = o // wo
        i = t % ho
        nc = t // ho
        base = nc * h * w                 # start of plane nc in the input
        r0 = i * sh - ph                  # the window's top-left corner in input coordinates
        c0 = j * sw - pw
        best = neg_inf
        best_idx = r0 * w + c0            # tap 0, the answer if every tap is -inf
        for a in range(kh):
            r = r0 + a
            for b in range(kw):
                col = c0 + b
                if 0 <= r < h and 0 <= col < w:
                    v = x[base + r * w + col]
                else:
                    v = neg_inf           # padding
                # First maximum wins; a NaN beats any number (first NaN wins), as np.argmax.
                if v > best or (v != v and best == best):
                    best = v
                    best_idx = r * w + col
        out[o] = best
        argmax[o] = best_idx


@cuda.jit
def max_pool2d_bwd_kernel1(grad_out, argmax, grad_in, plane_out, plane_in, n_out):
    for o in range(cuda.grid(1), n_out, cuda.gridsize(1)):
        # Output o belongs to plane o // (Ho*Wo); its argmax indexes that plane of the input.
        nc = o // plane_out
        cuda.atomic.add(grad_in, nc * plane_in + argmax[o], grad_out[o])

# ---------------------------------------------------------------- launchers


def max_pool2d_fwd(x, kernel, stride, padding):
    """Max over each window of ``x`` (N, C, H, W); also the flat index (into H*W of the input,
    int64) of each maximum. ``kernel``, ``stride``, ``padding`` are (h, w) pairs; padding acts as
    -inf. Returns ``out, argmax``, both (N, C, Ho, Wo), ``Ho = (H + 2*ph - KH) // sh + 1``."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    assert ho > 0 and wo > 0, f"max_pool2d: window {kernel} larger than padded input {x.shape}"
    out = rt.empty((n, c, ho, wo), x.dtype)
    argmax = rt.empty((n, c, ho, wo), np.int64)
    n_out = n * c * ho * wo
    if n_out:
        rt.launch(max_pool2d_fwd_kernel1, grid_blocks(n_out), THREADS,
            flat(x), out.reshape(-1), argmax.reshape(-1), h, w, ho, wo, kh, kw, sh, sw, ph, pw,
                  n_out)
    return out, argmax


def max_pool2d_bwd(grad_out, argmax, x_shape):
    """Each output's gradient added to the input element that was its maximum: (N, C, H, W)."""
    n, c, h, w = x_shape
    assert grad_out.shape == argmax.shape, "max_pool2d_bwd: grad_out and argmax shapes differ"
    grad = rt.zeros(tuple(x_shape), grad_out.dtype)     # the atomics accumulate into zeros
    n_out = grad_out.size
    if n_out:
        plane_out = grad_out.shape[2] * grad_out.shape[3]
        rt.launch(max_pool2d_bwd_kernel1, grid_blocks(n_out), THREADS,
                  flat(grad_out), flat(argmax), grad.reshape(-1), plane_out, h * w, n_out)
    return grad

# ---------------------------------------------------------------- compile check


def _signatures():
    idx = int64[::1]
    sigs = []
    for f in (float32, float64):
        arr = f[::1]
        sigs += [
            (f"max_pool2d_fwd_kernel1_{f}", max_pool2d_fwd_kernel1,
             (arr, arr, idx) + (int64,) * 11),
            (f"max_pool2d_bwd_kernel1_{f}", max_pool2d_bwd_kernel1,
             (arr, idx, arr, int64, int64, int64)),
        ]
    return sigs


# (name, kernel, numba signature) for every kernel and dtype the launchers use on a GPU.
PTX_SIGNATURES = _signatures()
