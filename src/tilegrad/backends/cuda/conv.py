"""2-D convolution (cross-correlation, as PyTorch): forward, backward-data, backward-weight.

Layouts as the NumPy backend: x (N, C, H, W), w (F, C, KH, KW), out and grad_out
(N, F, Ho, Wo) with ``Ho = (H + 2*ph - KH) // sh + 1`` (Wo likewise); stride (sh, sw) and
padding (ph, pw) are tuples; bias (F,) or None.

Version 1, implicit GEMM. Each of the three is a matrix product, computed by the shared-memory
tiled GEMM of ``matmul.py``'s v2 (a TILE x TILE block computes a TILE x TILE tile of the result;
each K-step stages one TILE x TILE tile of each operand in shared memory). What is new is that
the operand loads compute their im2col / col2im coordinates on the fly:

    forward        C[(n, oh, ow), f] = sum_{(c, kh, kw)} X[n, c, oh*sh - ph + kh, ow*sw - pw + kw]
                                                          * W[f, c, kh, kw]  (+ bias[f])
                   M = N*Ho*Wo, N_gemm = F, K = C*KH*KW; written straight into NCHW.
    bwd-weight     dW[f, (c, kh, kw)] = sum_{(n, oh, ow)} dY[n, f, oh, ow]
                                               * X[n, c, oh*sh - ph + kh, ow*sw - pw + kw]
                   M = F, N_gemm = C*KH*KW, K = N*Ho*Wo.
    bwd-data       dX[(n, ih, iw), c] = sum_{(f, kh, kw)} dY[n, f, oh, ow] * W[f, c, kh, kw]
                   over oh = (ih + ph - kh) / sh where that divides exactly and lands in [0, Ho)
                   (ow likewise); other taps load as zero. M = N*H*W, N_gemm = C, K = F*KH*KW.
                   This gather form gives each dX element to one thread: no atomics, and the
                   result is deterministic.

Padding is never materialised either: a tap that falls outside the input loads a zero.

Why implicit GEMM: an explicit im2col would write, then read back, a K x M buffer. For the
reference CNN's conv2 (64 -> 128 channels, 3x3, on 14x14 maps) at batch 64 that buffer is
576 x 12544 floats = 29 MB, allocated and moved through memory every step, for data the kernel
can gather from the 3.2 MB input as it stages each tile. The price is integer index arithmetic in
the loads; each thread decodes the coordinate that stays fixed along K (its output row or column)
once, outside the K loop, and decodes only the K-side coordinate per tile.

Threads: threadIdx.x runs along the GEMM dimension that is contiguous in memory for the output
(the spatial index (n, oh, ow) in forward and backward-data, (c, kh, kw) in backward-weight), so
the stores and most loads are coalesced.

Costs, s = bytes per element (4 for float32, 8 for float64):
    FLOPs  = 2*N*F*Ho*Wo*C*KH*KW for each of the three (forward adds N*F*Ho*Wo for the bias).
    bytes  >= s*(N*C*H*W + F*C*KH*KW + N*F*Ho*Wo) for each (each operand read once, the result
              written once; forward also reads F biases). v1 re-reads: global loads are
              2*M*N_gemm*K / TILE elements (served partly by L1/L2, since neighbouring windows
              overlap).

Split-K in backward-weight: its K = N*Ho*Wo is long and its output small when F and C*KH*KW
are (the CNN's first layer: K = 50,176 for 64 x 9 outputs, 4 blocks of 16 x 16). The launcher
then cuts K into slices, one grid layer (blockIdx.z) each, writes each slice's partial dW, and
sums the partials with ``reduce.sum``: deterministic, no atomics, at the cost of
splits * F*C*KH*KW partials written and read once.

Known gaps (later versions): the register blocking and double buffering of matmul v3/v4.

Kernels are made by factories (``make_conv2d_fwd_kernel1(tile, has_bias, dtype)``,
``make_conv2d_bwd_data_kernel1(tile, dtype)``, ``make_conv2d_bwd_weight_kernel1(tile, dtype)``)
so that the tile, the bias and the dtype are compile-time constants; TILE is 4 under the
simulator and 16 on a GPU. Index arithmetic is inline (no device functions; see reduce.py).

Test: ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_conv.py`` (each launcher against the NumPy
backend in float64 and float32 on odd shapes, strides and paddings); compile:
``NUMBA_ENABLE_CUDASIM=0 python -m tilegrad.backends.cuda.ptx --out build --families conv``.
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int64

from .reduce import sum as _sum
from .runtime import SIMULATOR, ceil_div, empty, launch, multiprocessors, placeholder

_NUMBA_DTYPES = {np.dtype("float32"): float32, np.dtype("float64"): float64}

TILE = 4 if SIMULATOR else 16
GPU_TILE = 16
# Split-K for backward-weight: blocks wanted per multiprocessor (8 blocks of 256 threads fill
# one), and the fewest K-tiles a slice may have. The simulator's values make tiny tests split.
SPLIT_TARGET = 4 if SIMULATOR else 8
SPLIT_MIN_TILES = 2 if SIMULATOR else 8

# ---------------------------------------------------------------- kernels
# All three kernels: block (TILE, TILE), thread (ty, tx) computes the result element at GEMM row
# r0 + ty, column c0 + tx of its block's tile (for forward and backward-data the tile is
# transposed: x runs along the spatial GEMM rows, y along channels). Shared memory holds, per
# K-step, a TILE x TILE slice of each operand, indexed [k, x-side] and [y-side, k] so that the
# inner loop reads a broadcast value and a bank-consecutive one.


@functools.lru_cache(maxsize=None)
def make_conv2d_fwd_kernel1(tile, has_bias, dtype):
    """Forward: thread (ty, tx) owns out[n, f, oh, ow] with (n, oh, ow) = spatial index
    blockIdx.x*TILE + tx and f = blockIdx.y*TILE + ty."""
    zero = dtype(0)

    @cuda.jit
    def conv2d_fwd_kernel1(x, w, bias, out, n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo):
        sx = cuda.shared.array((tile, tile), dtype)   # sx[k, m]: X(m0 + m, k0 + k), im2col'd
        sw_ = cuda.shared.array((tile, tile), dtype)  # sw_[f, k]: W[f0 + f, k0 + k]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        m = cuda.blockIdx.x * tile + tx               # this thread's spatial index (n, oh, ow)
        fo = cuda.blockIdx.y * tile + ty              # this thread's output channel
        mm = n * ho * wo
        kk = c * kh * kw
        khw = kh * kw
        # The spatial index is fixed along K: decode it once. Thread (ty, tx) loads, each K-step,
        # X at row m (its own column of the tile) and GEMM-k k0 + ty.
        ow_ = m % wo
        oh_ = (m // wo) % ho
        nb = m // (wo * ho)
        ih0 = oh_ * sh - ph                           # the window's top-left in unpadded input
        iw0 = ow_ * sw - pw
        x_base = nb * c * h * wd                      # start of image nb
        # ...and W at row f0 + ty (fo), GEMM-k k0 + tx: flat (f, c, kh, kw) is f*K + k.
        acc = zero
        for k0 in range(0, kk, tile):
            k = k0 + ty
            v = zero
            if m < mm and k < kk:
                ci = k // khw                         # k = (ci, ki, kj)
                r = k - ci * khw
                ki = r // kw
                kj = r - ki * kw
                ih = ih0 + ki
                iw = iw0 + kj
                if ih >= 0 and ih < h and iw >= 0 and iw < wd:   # else: padding, a zero
                    v = x[x_base + (ci * h + ih) * wd + iw]
            sx[ty, tx] = v
            k = k0 + tx
            sw_[ty, tx] = w[fo * kk + k] if fo < f and k < kk else zero
            cuda.syncthreads()                        # both tiles complete before anyone reads
            for p in range(tile):
                acc += sw_[ty, p] * sx[p, tx]
            cuda.syncthreads()                        # all reads done before the next tiles land
        if m < mm and fo < f:
            if has_bias:
                acc += bias[fo]
            # out[nb, fo, oh_, ow_]: consecutive tx write consecutive ow (coalesced).
            out[((nb * f + fo) * ho + oh_) * wo + ow_] = acc
    return conv2d_fwd_kernel1


@functools.lru_cache(maxsize=None)
def make_conv2d_bwd_weight_kernel1(tile, dtype):
    """Backward-weight: thread (ty, tx) owns dW[f, q] with f = blockIdx.y*TILE + ty and
    q = (c, kh, kw) = blockIdx.x*TILE + tx; K runs over the N*Ho*Wo output positions."""
    zero = dtype(0)

    @cuda.jit
    def conv2d_bwd_weight_kernel1(gy, x, dw, n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo,
                                  chunk):
        sg = cuda.shared.array((tile, tile), dtype)   # sg[f, r]: dY(f0 + f, r0 + r)
        sx = cuda.shared.array((tile, tile), dtype)   # sx[r, q]: X(r0 + r, q0 + q), im2col'd
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        q = cuda.blockIdx.x * tile + tx               # this thread's (c, kh, kw), flat
        fo = cuda.blockIdx.y * tile + ty              # this thread's output channel
        kk = c * kh * kw
        khw = kh * kw
        hw_o = ho * wo
        # The GEMM's K runs over all N*Ho*Wo output positions; split-K block z takes positions
        # [z*chunk, z*chunk + chunk) and writes its partial sums to slice z of dw.
        r_begin = cuda.blockIdx.z * chunk
        rr = min(n * hw_o, r_begin + chunk)
        # q is fixed along K: decode the tap once. Thread (ty, tx) loads X at GEMM-k r0 + ty,
        # tap q, and dY at channel fo, GEMM-k r0 + tx.
        ci = q // khw
        t = q - ci * khw
        ki = t // kw
        kj = t - ki * kw
        acc = zero
        for r0 in range(r_begin, rr, tile):
            r = r0 + tx                               # dY[nb, fo, oh, ow] with r = (nb, oh, ow)
            v = zero
            if fo < f and r < rr:
                nb = r // hw_o
                v = gy[(nb * f + fo) * hw_o + (r - nb * hw_o)]
            sg[ty, tx] = v
            r = r0 + ty                               # X at window r, tap q
            v = zero
            if q < kk and r < rr:
                nb = r // hw_o
                s = r - nb * hw_o
                oh_ = s // wo
                ow_ = s - oh_ * wo
                ih = oh_ * sh - ph + ki
                iw = ow_ * sw - pw + kj
                if ih >= 0 and ih < h and iw >= 0 and iw < wd:   # else: padding, a zero
                    v = x[((nb * c + ci) * h + ih) * wd + iw]
            sx[ty, tx] = v
            cuda.syncthreads()                        # both tiles complete before anyone reads
            for p in range(tile):
                acc += sg[ty, p] * sx[p, tx]
            cuda.syncthreads()                        # all reads done before the next tiles land
        if fo < f and q < kk:
            dw[(cuda.blockIdx.z * f + fo) * kk + q] = acc   # dW[z, fo, ci, ki, kj], along q
    return conv2d_bwd_weight_kernel1


@functools.lru_cache(maxsize=None)
def make_conv2d_bwd_data_kernel1(tile, dtype):
    """Backward-data: thread (ty, tx) owns dX[n, c, ih, iw] with (n, ih, iw) = spatial index
    blockIdx.x*TILE + tx and c = blockIdx.y*TILE + ty; K runs over (f, kh, kw)."""
    zero = dtype(0)

    @cuda.jit
    def conv2d_bwd_data_kernel1(gy, w, dx, n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo):
        sg = cuda.shared.array((tile, tile), dtype)   # sg[k, m]: dY gathered for (m0+m, k0+k)
        sw_ = cuda.shared.array((tile, tile), dtype)  # sw_[c, k]: W[(f, kh, kw) = k0+k, c0+c]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        m = cuda.blockIdx.x * tile + tx               # this thread's input position (n, ih, iw)
        co = cuda.blockIdx.y * tile + ty              # this thread's input channel
        mm = n * h * wd
        khw = kh * kw
        kk = f * khw                                  # the GEMM's K: (f, kh, kw)
        # The input position is fixed along K: decode it once. Tap (ki, kj) of output (oh, ow)
        # reads input (oh*sh - ph + ki, ow*sw - pw + kj); so input (ih, iw) receives from
        # oh = (ih + ph - ki) / sh when that is a whole number in [0, Ho) (ow likewise).
        iw_ = m % wd
        ih_ = (m // wd) % h
        nb = m // (wd * h)
        hp = ih_ + ph                                 # row in the padded input
        wp = iw_ + pw
        gy_base = nb * f * ho * wo                    # start of dY's image nb
        acc = zero
        for k0 in range(0, kk, tile):
            k = k0 + ty                               # dY at position m, GEMM-k k = (fi, ki, kj)
            v = zero
            if m < mm and k < kk:
                fi = k // khw
                t = k - fi * khw
                ki = t // kw
                kj = t - ki * kw
                a = hp - ki                           # = oh*sh when this tap is used
                b = wp - kj
                if a >= 0 and b >= 0:                 # checked first: % and // of non-negatives
                    oh_ = a // sh
                    ow_ = b // sw
                    if oh_ * sh == a and ow_ * sw == b and oh_ < ho and ow_ < wo:
                        v = gy[gy_base + (fi * ho + oh_) * wo + ow_]
            sg[ty, tx] = v
            k = k0 + tx                       # W[fi, co, ki, kj]: flat (fi*C + co)*KH*KW + t
            v = zero
            if co < c and k < kk:
                fi = k // khw
                v = w[(fi * c + co) * khw + (k - fi * khw)]
            sw_[ty, tx] = v
            cuda.syncthreads()                        # both tiles complete before anyone reads
            for p in range(tile):
                acc += sw_[ty, p] * sg[p, tx]
            cuda.syncthreads()                        # all reads done before the next tiles land
        if m < mm and co < c:
            dx[((nb * c + co) * h + ih_) * wd + iw_] = acc   # coalesced along iw
    return conv2d_bwd_data_kernel1


# ---------------------------------------------------------------- launchers

def _check(a, b, what):
    assert a.dtype == b.dtype and a.dtype in _NUMBA_DTYPES, f"{what}: dtypes {a.dtype}, {b.dtype}"
    return _NUMBA_DTYPES[a.dtype]


def _geometry(stride, padding, kernel):
    (sh, sw), (ph, pw) = stride, padding
    assert sh >= 1 and sw >= 1 and ph >= 0 and pw >= 0, \
        f"conv2d: stride {stride}, padding {padding}"
    kh, kw = kernel
    return int(sh), int(sw), int(ph), int(pw), int(kh), int(kw)


def conv2d_fwd(x, w, bias, stride, padding):
    """Cross-correlation as in PyTorch: x (N, C, H, W), w (F, C, KH, KW) -> (N, F, Ho, Wo)."""
    dt = _check(x, w, "conv2d_fwd")
    n, c, h, wd = (int(s) for s in x.shape)
    f, c2, _, _ = (int(s) for s in w.shape)
    assert c == c2, f"conv2d_fwd: input has {c} channels, weight {c2}"
    sh, sw, ph, pw, kh, kw = _geometry(stride, padding, w.shape[2:])
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    assert ho >= 1 and wo >= 1, f"conv2d_fwd: kernel {(kh, kw)} larger than padded input"
    assert bias is None or tuple(bias.shape) == (f,), f"conv2d_fwd: bias {bias.shape} is not ({f},)"
    assert bias is None or bias.dtype == x.dtype, f"conv2d_fwd: bias dtype {bias.dtype}"
    out = empty((n, f, ho, wo), x.dtype)
    has_bias = bias is not None
    bias_arr = bias.reshape(-1) if has_bias else placeholder(x.dtype)
    m = n * ho * wo
    if m and f:
        kernel = make_conv2d_fwd_kernel1(TILE, has_bias, dt)
        grid = (ceil_div(m, TILE), ceil_div(f, TILE))
        launch(kernel, grid, (TILE, TILE), x.reshape(-1), w.reshape(-1), bias_arr,
               out.reshape(-1), n, c, h, wd, f, kh, kw,
               sh, sw, ph, pw, ho, wo)
    return out


def conv2d_bwd_weight(grad_out, x, w_shape, stride, padding):
    """dL/dw (F, C, KH, KW) from grad_out (N, F, Ho, Wo) and the input x (N, C, H, W)."""
    dt = _check(grad_out, x, "conv2d_bwd_weight")
    n, c, h, wd = (int(s) for s in x.shape)
    f, c2, _, _ = (int(s) for s in w_shape)
    assert c == c2, f"conv2d_bwd_weight: input has {c} channels, weight {c2}"
    sh, sw, ph, pw, kh, kw = _geometry(stride, padding, w_shape[2:])
    n2, f2, ho, wo = (int(s) for s in grad_out.shape)
    assert (n2, f2) == (n, f), f"conv2d_bwd_weight: grad_out {grad_out.shape} for x {x.shape}"
    kk = c * kh * kw
    blocks = ceil_div(kk, TILE) * ceil_div(f, TILE)
    splits, chunk = _split_k(blocks, n * ho * wo)
    dw = empty((splits, f, c, kh, kw) if splits > 1 else (f, c, kh, kw), x.dtype)
    if f and kk:
        kernel = make_conv2d_bwd_weight_kernel1(TILE, dt)
        grid = (ceil_div(kk, TILE), ceil_div(f, TILE), splits)
        launch(kernel, grid, (TILE, TILE), grad_out.reshape(-1), x.reshape(-1), dw.reshape(-1),
               n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo, chunk)
    return _sum(dw, (0,), False) if splits > 1 else dw


def _split_k(blocks, k):
    """(splits, chunk): how many slices to cut a GEMM's K into, and each slice's length (a
    multiple of TILE), so that about ``SPLIT_TARGET`` blocks per multiprocessor run when the
    output alone gives too few, and each slice keeps at least ``SPLIT_MIN_TILES`` K-tiles."""
    want = ceil_div(SPLIT_TARGET * multiprocessors(), max(blocks, 1))
    splits = max(1, min(want, ceil_div(k, TILE) // SPLIT_MIN_TILES))
    chunk = ceil_div(ceil_div(max(k, 1), splits), TILE) * TILE
    return ceil_div(max(k, 1), chunk), chunk


def conv2d_bwd_data(grad_out, w, x_shape, stride, padding):
    """dL/dx (N, C, H, W) from grad_out (N, F, Ho, Wo) and the weight w (F, C, KH, KW)."""
    dt = _check(grad_out, w, "conv2d_bwd_data")
    n, c, h, wd = (int(s) for s in x_shape)
    f, c2, _, _ = (int(s) for s in w.shape)
    assert c == c2, f"conv2d_bwd_data: x_shape has {c} channels, weight {c2}"
    sh, sw, ph, pw, kh, kw = _geometry(stride, padding, w.shape[2:])
    n2, f2, ho, wo = (int(s) for s in grad_out.shape)
    assert (n2, f2) == (n, f), f"conv2d_bwd_data: grad_out {grad_out.shape} for x {x_shape}"
    dx = empty((n, c, h, wd), grad_out.dtype)
    m = n * h * wd
    if m and c:
        kernel = make_conv2d_bwd_data_kernel1(TILE, dt)
        grid = (ceil_div(m, TILE), ceil_div(c, TILE))
        launch(kernel, grid, (TILE, TILE), grad_out.reshape(-1), w.reshape(-1), dx.reshape(-1),
               n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo)
    return dx


VERSIONS = {"v1": {"fwd": conv2d_fwd, "bwd_data": conv2d_bwd_data,
                   "bwd_weight": conv2d_bwd_weight}}

# ---------------------------------------------------------------- compile check


def _signatures():
    """Every kernel the launchers make on a GPU (TILE 16), in float32 and float64."""
    sigs = []
    for dt in (float32, float64):
        arr = dt[::1]
        sizes = (int64,) * 13               # n, c, h, w, f, kh, kw, sh, sw, ph, pw, ho, wo
        sigs += [
            (f"conv2d_fwd_kernel1_{dt}", make_conv2d_fwd_kernel1(GPU_TILE, False, dt),
             (arr, arr, arr, arr) + sizes),
            (f"conv2d_fwd_kernel1_{dt}_bias", make_conv2d_fwd_kernel1(GPU_TILE, True, dt),
             (arr, arr, arr, arr) + sizes),
            (f"conv2d_bwd_weight_kernel1_{dt}", make_conv2d_bwd_weight_kernel1(GPU_TILE, dt),
             (arr, arr, arr) + sizes + (int64,)),
            (f"conv2d_bwd_data_kernel1_{dt}", make_conv2d_bwd_data_kernel1(GPU_TILE, dt),
             (arr, arr, arr) + sizes),
        ]
    return sigs


PTX_SIGNATURES = [] if SIMULATOR else _signatures()
