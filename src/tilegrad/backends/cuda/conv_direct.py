"""Direct 2-D convolution kernels for one input channel (C = 1), for ``conv.py``'s version 2.

A first layer on grey images (the reference CNN's conv1: batch 64, 1 x 28 x 28 -> 64 channels,
3 x 3, padding 1) makes a poor GEMM: K = C*KH*KW = 9 is shorter than one K-tile, and its
backward-weight has only F*KH*KW = 576 outputs for a K of N*Ho*Wo = 50,176. These kernels compute
it directly instead; the filter size (KH, KW), the threads per block and the filters per block are
compile-time constants, so the window and the accumulators live in registers.

    forward        out[n, f, oh, ow] = bias[f] + sum_{kh, kw} W[f, 0, kh, kw]
                                               * X[n, 0, oh*sh - ph + kh, ow*sw - pw + kw]
                   thread = output position (n, oh, ow), block.y = a group of filters (staged
                   in shared memory); each thread loads its KH x KW window once into
                   registers and writes one output per filter (coalesced along ow).
    bwd-data       dX[n, 0, ih, iw] = sum_{f, kh, kw} dY[n, f, oh, ow] * W[f, 0, kh, kw] over
                   oh = (ih + ph - kh) / sh where whole and in [0, Ho) (ow likewise); thread =
                   input position, which taps land (and where) decoded once; the filters pass
                   through shared memory a chunk at a time.
    bwd-weight     dW[f, 0, kh, kw] = sum_{n, oh, ow} dY[n, f, oh, ow]
                                               * X[n, 0, oh*sh - ph + kh, ow*sw - pw + kw]:
                   a reduction. Block (z, g) sums output rows (n, oh) of slice z for filter group
                   g: thread (r, ow) = (tid // Wo, tid % Wo) takes rows r, r + T//Wo, ... (T
                   threads; the row counter is carried, never divided), holding group*KH*KW
                   partial sums in registers; the block adds its threads' sums in shared memory
                   (a fixed order), slice z writes its partial dW, and ``reduce.sum`` adds the
                   slices: deterministic, no atomics.

Indices are uint32, as in conv.py's version 2; divisions (by the runtime Wo, H*W) happen once per
thread, outside the loops.

Costs (s bytes per element): FLOPs 2*N*F*Ho*Wo*KH*KW each. Bytes, at least s*(N*H*W + F*KH*KW +
N*F*Ho*Wo); the forward and backward-data re-read the input / dY per filter group / tap, served by
L1 and L2. For conv1 the N*F*Ho*Wo term (12.8 MB in float32, 2.7 us at 4.8 TB/s) dominates the
bytes, and the instructions per output the time. Compiled for sm_90, float32, 3x3: the forward's
filter loop issues about 54 instructions per output (9 FFMA, 9 LDS), 32 registers; backward-data's
78 per filter and input position (9 FFMA, 9 LDG, 9 LDS), 32 registers; backward-weight's 132 per
position and group of 4 filters (36 FFMA, 13 LDG), 64 registers. At conv1's shapes on an H200
(132 multiprocessors x 4 warp instructions per clock at 1.98 GHz) that is about 5 us forward,
8 us backward-data and 3 us backward-weight (plus its 28 slices' sum), issue-bound.

Test: ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_conv.py`` (C = 1 cases).
"""
import functools

import numpy as np
from numba import cuda, float32, float64, uint32

from .common import flat
from .reduce import sum as _sum
from .runtime import SIMULATOR, ceil_div, empty, launch, multiprocessors, placeholder

U = uint32
_NUMBA_DTYPES = {np.dtype("float32"): float32, np.dtype("float64"): float64}

# (threads per block, filters per block): forward (a group of filters per block), backward-data
# (a chunk of filters staged per round), backward-weight (a group of filters per block: its
# T x group*KH*KW partial sums must fit in 48 KB of shared memory in float64).
GPU_FWD, GPU_BWD_DATA, GPU_BWD_WEIGHT = (256, 16), (256, 64), (128, 4)
FWD = (8, 2) if SIMULATOR else GPU_FWD
BWD_DATA = (8, 3) if SIMULATOR else GPU_BWD_DATA
BWD_WEIGHT = (8, 2) if SIMULATOR else GPU_BWD_WEIGHT
# Backward-weight slices: blocks wanted per multiprocessor, and the fewest row steps per slice.
SPLIT_TARGET = 4
SPLIT_MIN_STEPS = 2 if SIMULATOR else 16


@cuda.jit(device=True)
def _tap_source(p, t, stride, size):
    """The output coordinate o whose tap t reads padded-input coordinate p (p = o*stride + t),
    and whether it exists (a whole o in [0, size)): (ok, o), both uint32, o = 0 when not ok."""
    ok, o = U(0), U(0)
    if p >= t:
        o = U(U(p - t) // stride)
        ok = U(U(o * stride) == U(p - t) and o < size)
    return ok, o


@functools.lru_cache(maxsize=None)
def _window(kh, kw, dtype):
    """Device function: the kh x kw input window of image ``nb`` whose corner is (ohs, ows) in
    the padded input, into ``win`` (zeros where it falls in the padding)."""
    zero = dtype(0)

    @cuda.jit(device=True)
    def window(x, win, nb, ohs, ows, h, wd, ph, pw):
        for i in range(kh):
            for j in range(kw):
                v = zero
                ihp, iwp = U(ohs + U(i)), U(ows + U(j))
                if ihp >= ph and ihp < U(h + ph) and iwp >= pw and iwp < U(wd + pw):
                    v = x[U(U(nb * U(h * wd)) + U(U(U(ihp - ph) * wd) + U(iwp - pw)))]
                win[i * kw + j] = v
    return window


@functools.lru_cache(maxsize=None)
def make_conv2d_fwd_direct_kernel(threads, group, kh, kw, has_bias, dtype):
    """Forward for C = 1: thread = output position m = blockIdx.x*T + tid; filters
    blockIdx.y*group + 0..group-1."""
    khw, gk = kh * kw, group * kh * kw
    zero = dtype(0)
    T, G, KHW = U(threads), U(group), U(khw)
    window = _window(kh, kw, dtype)

    @cuda.jit
    def conv2d_fwd_direct_kernel(x, w, bias, out, mm, h, wd, f, howo, wo, sh, sw, ph, pw):
        sw_ = cuda.shared.array(gk, dtype)          # this block's filters, [g*KH*KW + t]
        sb = cuda.shared.array(group, dtype)
        win = cuda.local.array(khw, dtype)          # this thread's window
        tid = U(cuda.threadIdx.x)
        f0 = U(U(cuda.blockIdx.y) * G)
        e = tid
        while e < U(gk):
            sw_[e] = w[U(U(f0 * KHW) + e)] if U(f0 * KHW) + e < U(f * KHW) else zero
            e = U(e + T)
        if has_bias and tid < G:
            sb[tid] = bias[U(f0 + tid)] if f0 + tid < f else zero
        cuda.syncthreads()                          # the filters are staged before anyone reads
        m = U(U(U(cuda.blockIdx.x) * T) + tid)
        if m < mm:
            nb = U(m // howo)
            s = U(m - U(nb * howo))
            oh = U(s // wo)
            ohs, ows = U(oh * sh), U(U(s - U(oh * wo)) * sw)   # window corner, padded input
            window(x, win, nb, ohs, ows, h, wd, ph, pw)
            obase = U(U(U(nb * f) * howo) + s)
            for g in range(group):
                fo = U(f0 + U(g))
                if fo < f:
                    acc = sb[U(g)] if has_bias else zero
                    for t in range(khw):
                        acc += sw_[U(U(U(g) * KHW) + U(t))] * win[t]
                    out[U(obase + U(fo * howo))] = acc     # coalesced along ow
    return conv2d_fwd_direct_kernel


@functools.lru_cache(maxsize=None)
def make_conv2d_bwd_data_direct_kernel(threads, chunk, kh, kw, dtype):
    """Backward-data for C = 1: thread = input position m = blockIdx.x*T + tid; the filters
    pass through shared memory ``chunk`` at a time."""
    khw, ck = kh * kw, chunk * kh * kw
    zero = dtype(0)
    T, CH, KHW = U(threads), U(chunk), U(khw)

    @cuda.jit
    def conv2d_bwd_data_direct_kernel(gy, w, dx, mm, h, wd, f, ho, wo, sh, sw, ph, pw):
        sw_ = cuda.shared.array(ck, dtype)
        rowok = cuda.local.array(kh, U)             # tap row i lands on output row roff/Wo
        roff = cuda.local.array(kh, U)
        colok = cuda.local.array(kw, U)
        coff = cuda.local.array(kw, U)
        tid = U(cuda.threadIdx.x)
        m = U(U(U(cuda.blockIdx.x) * T) + tid)
        hw, howo = U(h * wd), U(ho * wo)
        nb = U(m // hw)
        s = U(m - U(nb * hw))
        ih = U(s // wd)
        iw = U(s - U(ih * wd))
        # Tap (i, j) of output (oh, ow) reads input (oh*sh - ph + i, ow*sw - pw + j): input (ih, iw)
        # gets it from oh = (ih + ph - i) / sh where that is whole and in [0, Ho). Decoded once.
        for i in range(kh):
            ok, oh = _tap_source(U(ih + ph), U(i), sh, ho)
            rowok[i], roff[i] = ok, U(oh * wo)
        for j in range(kw):
            colok[j], coff[j] = _tap_source(U(iw + pw), U(j), sw, wo)
        acc = zero
        f0 = U(0)
        while f0 < f:
            e = tid
            while e < U(ck):
                sw_[e] = w[U(U(f0 * KHW) + e)] if U(f0 * KHW) + e < U(f * KHW) else zero
                e = U(e + T)
            cuda.syncthreads()                      # this chunk of filters is staged
            g = U(0)
            while m < mm and g < CH and f0 + g < f:
                base = U(U(U(nb * f) + U(f0 + g)) * howo)
                for i in range(kh):
                    if rowok[i]:
                        for j in range(kw):
                            if colok[j]:
                                acc += gy[U(base + U(roff[i] + coff[j]))] * \
                                    sw_[U(U(g * KHW) + U(i * kw + j))]
                g = U(g + U(1))
            cuda.syncthreads()                      # read before the next chunk lands
            f0 = U(f0 + CH)
        if m < mm:
            dx[m] = acc                              # dX[n, 0, ih, iw]: m is its flat index
    return conv2d_bwd_data_direct_kernel


@functools.lru_cache(maxsize=None)
def make_conv2d_bwd_weight_direct_kernel(threads, group, kh, kw, dtype):
    """Backward-weight for C = 1: block (z, g) = (blockIdx.x, blockIdx.y) writes the partial
    dW of filter group g over output rows [z*chunk, z*chunk + chunk) (a row is (n, oh))."""
    khw, gk = kh * kw, group * kh * kw
    seg = min(32, threads)                          # reduction: segments of seg threads
    nseg = threads // seg
    assert threads % seg == 0
    zero = dtype(0)
    T, G, KHW = U(threads), U(group), U(khw)
    window = _window(kh, kw, dtype)

    @cuda.jit
    def conv2d_bwd_weight_direct_kernel(gy, x, dw, rows, h, wd, f, ho, wo, sh, sw, ph, pw,
                                        chunk, rps):
        red = cuda.shared.array((gk, threads), dtype)   # every thread's partial sums
        red2 = cuda.shared.array((gk, nseg), dtype)     # ... summed per segment
        acc = cuda.local.array(gk, dtype)
        win = cuda.local.array(khw, dtype)
        tid = U(cuda.threadIdx.x)
        z, f0 = U(cuda.blockIdx.x), U(U(cuda.blockIdx.y) * G)
        howo = U(ho * wo)
        for v in range(gk):
            acc[v] = zero
        # This thread's output column and first row: rps = T // Wo rows per step (one row, with
        # the columns in several passes, when Wo > T). Threads past rps*Wo idle.
        ri, ow0 = U(0), tid
        if wo <= T:
            ri = U(tid // wo)
            ow0 = U(tid - U(ri * wo))
        row = U(U(z * chunk) + ri)
        row_end = min(rows, U(U(z * chunk) + chunk))
        nb = U(row // ho)
        oh = U(row - U(nb * ho))
        while ri < rps and row < row_end:
            ohs = U(oh * sh)
            ow = ow0
            while ow < wo:
                ows = U(ow * sw)
                window(x, win, nb, ohs, ows, h, wd, ph, pw)
                gbase = U(U(U(U(nb * f) + f0) * howo) + U(U(oh * wo) + ow))
                for g in range(group):
                    if f0 + U(g) < f:
                        gv = gy[U(gbase + U(U(g) * howo))]
                        for t in range(khw):
                            acc[g * khw + t] += gv * win[t]
                ow = U(ow + T)
            row = U(row + rps)                       # the next row: (n, oh) carried
            oh = U(oh + rps)
            while oh >= ho:
                oh = U(oh - ho)
                nb = U(nb + U(1))
        # The block's sum of each of the group*KH*KW values: per segment of seg threads, then
        # the segments, always in the same order.
        for v in range(gk):
            red[v, tid] = acc[v]
        cuda.syncthreads()
        e = tid
        while e < U(gk * nseg):
            v, sg = U(e // U(nseg)), U(e % U(nseg))
            total = zero
            for k in range(seg):
                total += red[v, U(U(sg * U(seg)) + U(k))]
            red2[v, sg] = total
            e = U(e + T)
        cuda.syncthreads()
        e = tid
        while e < U(gk):
            total = zero
            for k in range(nseg):
                total += red2[e, k]
            if f0 + U(e // KHW) < f:                 # dW[z, f0 + g, 0, t] with e = g*KH*KW + t
                dw[U(U(U(z * f) * KHW) + U(U(f0 * KHW) + e))] = total
            e = U(e + T)
    return conv2d_bwd_weight_direct_kernel


# ---------------------------------------------------------------- launchers
# conv.py's version-2 launchers call these when C == 1, after checking the shapes.

def _u32(*values):
    assert all(0 <= v < 2 ** 31 for v in values), f"conv2d direct: sizes {values} too large"
    return tuple(np.uint32(v) for v in values)


def conv2d_fwd_direct(x, w, bias, stride, padding, ho, wo):
    n, _, h, wd = (int(s) for s in x.shape)
    f, _, kh, kw = (int(s) for s in w.shape)
    (sh, sw), (ph, pw) = stride, padding
    out = empty((n, f, ho, wo), x.dtype)
    threads, group = FWD
    has_bias = bias is not None
    kernel = make_conv2d_fwd_direct_kernel(threads, group, kh, kw, has_bias,
                                           _NUMBA_DTYPES[x.dtype])
    m = n * ho * wo
    _u32(x.size, w.size, out.size)
    if m and f:
        launch(kernel, (ceil_div(m, threads), ceil_div(f, group)), threads, flat(x),
               flat(w), flat(bias) if has_bias else placeholder(x.dtype),
               out.reshape(-1), *_u32(m, h, wd, f, ho * wo, wo, sh, sw, ph, pw))
    return out


def conv2d_bwd_data_direct(grad_out, w, x_shape, stride, padding):
    n, _, h, wd = x_shape
    f, _, kh, kw = (int(s) for s in w.shape)
    ho, wo = (int(s) for s in grad_out.shape[2:])
    (sh, sw), (ph, pw) = stride, padding
    dx = empty((n, 1, h, wd), grad_out.dtype)
    threads, chunk = BWD_DATA
    kernel = make_conv2d_bwd_data_direct_kernel(threads, chunk, kh, kw,
                                                _NUMBA_DTYPES[grad_out.dtype])
    m = n * h * wd
    _u32(grad_out.size, w.size, dx.size)
    if m:
        launch(kernel, ceil_div(m, threads), threads, flat(grad_out), flat(w),
               dx.reshape(-1), *_u32(m, h, wd, f, ho, wo, sh, sw, ph, pw))
    return dx


def _row_slices(groups, rows, rps):
    """(splits, chunk): backward-weight's slices of output rows, each a whole number of steps of
    ``rps`` rows, about SPLIT_TARGET blocks per multiprocessor over ``groups`` filter groups, at
    least SPLIT_MIN_STEPS steps each."""
    want = ceil_div(SPLIT_TARGET * multiprocessors(), max(groups, 1))
    splits = max(1, min(want, ceil_div(rows, rps) // SPLIT_MIN_STEPS))
    chunk = ceil_div(ceil_div(max(rows, 1), splits), rps) * rps
    return ceil_div(max(rows, 1), chunk), chunk


def conv2d_bwd_weight_direct(grad_out, x, w_shape, stride, padding):
    n, _, h, wd = (int(s) for s in x.shape)
    f, _, kh, kw = w_shape
    ho, wo = (int(s) for s in grad_out.shape[2:])
    (sh, sw), (ph, pw) = stride, padding
    threads, group = BWD_WEIGHT
    rps = max(1, threads // wo)
    groups = ceil_div(f, group)
    splits, chunk = _row_slices(groups, n * ho, rps)
    dw = empty((splits, f, 1, kh, kw) if splits > 1 else (f, 1, kh, kw), x.dtype)
    kernel = make_conv2d_bwd_weight_direct_kernel(threads, group, kh, kw, _NUMBA_DTYPES[x.dtype])
    _u32(grad_out.size, x.size, dw.size)
    if f:
        launch(kernel, (splits, groups), threads, flat(grad_out), flat(x),
               dw.reshape(-1), *_u32(n * ho, h, wd, f, ho, wo, sh, sw, ph, pw, chunk, rps))
    return _sum(dw, (0,), False) if splits > 1 else dw


# ---------------------------------------------------------------- compile check

def signatures(kh, kw):
    """(name, kernel, signature) of each direct kernel on a GPU for a KH x KW filter, float32
    and float64 (conv.py lists them in its PTX_SIGNATURES)."""
    sigs = []
    for dt in (float32, float64):
        arr, tag = dt[::1], f"{dt}_{kh}x{kw}"
        fwd = (arr,) * 4 + (U,) * 10
        for has_bias in (False, True):
            sigs.append((f"conv2d_fwd_direct_kernel_{tag}{'_bias' if has_bias else ''}",
                         make_conv2d_fwd_direct_kernel(*GPU_FWD, kh, kw, has_bias, dt), fwd))
        sigs.append((f"conv2d_bwd_data_direct_kernel_{tag}",
                     make_conv2d_bwd_data_direct_kernel(*GPU_BWD_DATA, kh, kw, dt),
                     (arr,) * 3 + (U,) * 10))
        sigs.append((f"conv2d_bwd_weight_direct_kernel_{tag}",
                     make_conv2d_bwd_weight_direct_kernel(*GPU_BWD_WEIGHT, kh, kw, dt),
                     (arr,) * 3 + (U,) * 12))
    return sigs


def launch_blocks(kh, kw):
    """{kernel name: threads per block} for the kernels of ``signatures``."""
    out = {}
    for dt in ("float32", "float64"):
        tag = f"{dt}_{kh}x{kw}"
        out[f"conv2d_fwd_direct_kernel_{tag}"] = out[f"conv2d_fwd_direct_kernel_{tag}_bias"] = \
            GPU_FWD[0]
        out[f"conv2d_bwd_data_direct_kernel_{tag}"] = GPU_BWD_DATA[0]
        out[f"conv2d_bwd_weight_direct_kernel_{tag}"] = GPU_BWD_WEIGHT[0]
    return out
