"""2-D convolution (cross-correlation, as PyTorch): forward, backward-data, backward-weight.

Layouts as the NumPy backend: x (N, C, H, W), w (F, C, KH, KW), out and grad_out
(N, F, Ho, Wo) with ``Ho = (H + 2*ph - KH) // sh + 1`` (Wo likewise); stride (sh, sw) and
padding (ph, pw) are tuples; bias (F,) or None.

Each pass is a matrix product whose operands are gathered on the fly (implicit GEMM: an explicit
im2col buffer for the reference CNN's conv2 at batch 64 would be 576 x 12544 floats, 29 MB,
written and read back every step, for data the kernels gather from a 3.2 MB input):

    forward        C[(n, oh, ow), f] = sum_{(c, kh, kw)} X[n, c, oh*sh - ph + kh, ow*sw - pw + kw]
                                                          * W[f, c, kh, kw]  (+ bias[f])
                   M = N*Ho*Wo, N_gemm = F, K = C*KH*KW; written straight into NCHW.
    bwd-weight     dW[f, (c, kh, kw)] = sum_{(n, oh, ow)} dY[n, f, oh, ow]
                                               * X[n, c, oh*sh - ph + kh, ow*sw - pw + kw]
                   M = F, N_gemm = C*KH*KW, K = N*Ho*Wo.
    bwd-data       dX[(n, ih, iw), c] = sum_{(f, kh, kw)} dY[n, f, oh, ow] * W[f, c, kh, kw]
                   over oh = (ih + ph - kh) / sh where that divides exactly and lands in [0, Ho)
                   (ow likewise). M = N*H*W, N_gemm = C, K = F*KH*KW. Gathered, each dX element
                   has one owner: no atomics, deterministic.

Padding is never materialised: a tap outside the input loads a zero.

Version 1: the shared-memory tiled GEMM of ``matmul.py``'s v2. A TILE x TILE block (16 x 16)
computes a TILE x TILE tile, one output per thread; each K-step stages a TILE x TILE tile of each
operand; a thread decodes its fixed GEMM coordinate once and the K-side coordinate (k -> (c, kh,
kw) or (n, oh, ow)) per tile, with signed 64-bit division (``__cuda_sm20_div_s64`` calls in the K
loop). Backward-weight cuts its long K into slices (split-K, below).

Version 2 (the default; kernels in ``conv_gemm.py``) adds, on one register-tiled core:
- Register tiles as in a tuned SGEMM: a 64 x 64 block tile on 64 threads, each thread 8 x 8
  outputs held as four 4 x 4 quadrants (rows ty*4 + {0, 32} + 0..3, columns likewise), so its
  fragment reads are aligned runs of 4 (``LDS.128``) and a warp's reads of one k touch few
  16-byte words: no bank conflicts. Two shared buffers per operand: the next K-tile's global
  loads are in flight during this K-tile's multiply-adds; one barrier per K-tile. The K-tile's
  k loop and the staging are written out (``_unrolled``), so the accumulators and the staged
  tile stay in registers.
- Unsigned 32-bit index arithmetic throughout (``uint32``, each result narrowed with U(...): Numba
  widens uint32 arithmetic to 64 bits and types literals as int64). Launchers check that every
  size fits; offsets that may be "negative" (a tap in the padding) are taken modulo 2**32
  (``_wrap_sub``/``_wrap_add``), so one unsigned compare tests a coordinate against both edges.
- The filter size is a compile-time constant (factories ``make_..._kernel2(tiles, kh, kw, ...)``,
  ``functools.lru_cache``'d). Forward: a K-tile is whole filters of a few channels (2 for 3x3:
  BK = 18), or for filters over 32 taps a few kernel rows of one channel (``_k_tile``); within it
  every element's (channel, kh, kw) is a constant, and a thread's column (its output position) is
  decoded once into a row offset and masks of the kernel rows and columns that fall inside the
  input. Backward-weight: a thread's column (its tap) is decoded once by constant divisions; the
  positions (n, oh, ow) of each K-tile are a shared table, written for the next K-tile by BK
  threads that step their own counters by BK (carried, never divided) while the block computes.
  No division of any kind is left in a K loop.
- Backward-data at stride 1 (padding below the filter size) is the forward kernel run on dY with
  the flipped, channel-transposed filter W'[c, f, i, j] = W[f, c, KH-1-i, KW-1-j] and padding
  KH-1-ph: the kernel's weight loader reverses the tap and swaps the two channel strides
  (``flip``). Other strides keep v1's gather kernel.
- Split-K, deterministic, for all three GEMMs: when the output gives too few blocks (fewer than
  ``SPLIT_TARGET2`` = 4 per multiprocessor for backward-weight, whose K is long; fewer than
  ``SPLIT_TARGET_FWD2`` = 2 for forward and backward-data, whose partial outputs cost more),
  blockIdx.z takes a slice of whole K-tiles and writes its partial result; ``reduce.sum`` adds
  the slices in a fixed order (no atomics), at the cost of splits x the output written and read.
- One input channel (the CNN's first layer) goes to the direct kernels of ``conv_direct.py``
  (a window per thread; backward-weight as a two-level reduction), not to the GEMM.

Costs, s = bytes per element (4 for float32, 8 for float64):
    FLOPs  = 2*N*F*Ho*Wo*C*KH*KW for each of the three (forward adds N*F*Ho*Wo for the bias).
    bytes  >= s*(N*C*H*W + F*C*KH*KW + N*F*Ho*Wo) for each (each operand read once, the result
              written once); the GEMMs' global loads are M*N_gemm*K*(1/BM + 1/BN) elements
              (v1: 2/16 per output-k pair, v2: 1/32; served partly by L1/L2, since neighbouring
              windows overlap), plus 2*s*splits*(output size) for split-K's partial results.

What the v2 kernels compile to (sm_90, float32, 3x3; ``python -m tilegrad.backends.cuda.ptx``):
forward and backward-data 167 registers, a K-tile loop of 1447 instructions of which 1152 FFMA
(80%: 72 LDS.128, 36 LDG, 36 STS, ~120 integer); backward-weight (BK = 16) 165 registers, 1421
instructions, 1024 FFMA (72%); no spills, no call of any division routine. Predicted speed: FFMA
share x 66.9 TFLOP/s (the H200's FP32 FMA peak) x grid fill, where a 64-thread block is two warps,
a multiprocessor issues at full rate from four, and the busiest of the 132 sets the time: fill =
blocks / (132 * max(2, ceil(blocks / 132))). At the reference CNN's shapes (batch 64):

    layer, pass                        grid (blocks = tiles x slices)   bound     fill   predicted
    conv2 forward (64->128, 14x14)     392 (no split)                  53.3      0.99   53 TFLOP/s
    conv3 forward (128->256, 7x7)      196 x 2 slices = 392            53.3      0.99   53
    conv2 backward-data                196 x 2 slices = 392            53.3      0.99   53
    conv3 backward-data                98 x 3 slices = 294             53.3      0.74   40
    conv2 backward-weight              18 x 30 slices = 540            48.2      0.82   39
    conv3 backward-weight              72 x 8 slices = 576             48.2      0.87   42

(1.85 GFLOP per pass for each layer: ~35-50 us at these rates; measured speeds of the other
GEMM-like kernels were 0.59-0.83 of such bounds, and split-K's partial sums add a memory-bound
pass.) v1's K loops are 3-6% FFMA (bound 2-4 TFLOP/s). The conv1 direct kernels are
memory- and issue-bound, a few microseconds each (``conv_direct.py``).

Known gaps (later versions): backward-data at stride > 1 (v1's gather kernel); 128-bit global
loads; occupancy (64-thread blocks of 165 registers: 12 warps per multiprocessor at most).

Test: ``NUMBA_ENABLE_CUDASIM=1 pytest tests/test_cuda_conv.py`` (every version and pass against
the NumPy backend in float64 and float32 on odd shapes, strides, paddings and filters, one input
channel included, split-K forced on and off; ``-m gpu_tiles`` runs v2 with the GPU's tiles in the
simulator); compile: ``NUMBA_ENABLE_CUDASIM=0 python -m tilegrad.backends.cuda.ptx --out build
--families conv``.
"""
import functools

import numpy as np
from numba import cuda, float32, float64, int64, uint32

from . import conv_direct as direct
from .common import NUMBA_DTYPES as _NUMBA_DTYPES
from .common import flat
from .common import udivmod
from .conv_gemm import _k_tile, make_conv2d_bwd_weight_kernel2, make_conv2d_fwd_kernel2
from .reduce import sum as _sum
from .runtime import SIMULATOR, ceil_div, empty, launch, multiprocessors, placeholder

# v1: TILE x TILE blocks, one output per thread.
TILE = 4 if SIMULATOR else 16
GPU_TILE = 16
# Split-K for backward-weight: blocks wanted per multiprocessor (8 blocks of 256 threads fill
# one), and the fewest K-tiles a slice may have. The simulator's values make tiny tests split.
GPU_SPLIT_TARGET, GPU_SPLIT_MIN_TILES = 8, 8
SPLIT_TARGET = 4 if SIMULATOR else GPU_SPLIT_TARGET
SPLIT_MIN_TILES = 2 if SIMULATOR else GPU_SPLIT_MIN_TILES

# v2: tiles (BM, BN, TM, TN, BK) per dtype and GEMM: a block computes BM x BN outputs with
# (BM/TM)*(BN/TN) threads of TM x TN each; BK is the K-tile (the forward's target: its K-tiles
# are whole filters, see _k_tile). On a GPU 64 x 64 by 64 threads of 8 x 8 (the CNN's layers
# give few outputs: bigger tiles would leave multiprocessors idle); float64 takes the forward's
# K-tile down to 9 to keep its 128 accumulator registers clear of spills. The simulator's tiles
# have 4 threads, each staging two columns of each operand.
V2_GPU_TILES = {"float32": {"fwd": (64, 64, 8, 8, 16), "bwd_weight": (64, 64, 8, 8, 16)},
                "float64": {"fwd": (64, 64, 8, 8, 8), "bwd_weight": (64, 64, 8, 8, 8)}}
V2_SIM_TILES = {dt: {"fwd": (8, 8, 4, 4, 4), "bwd_weight": (8, 8, 4, 4, 4)}
                for dt in ("float32", "float64")}
V2_TILES = V2_SIM_TILES if SIMULATOR else V2_GPU_TILES
# v2's split-K, backward-weight: 4 blocks of 64 threads per multiprocessor (up to 8 fit, by
# registers); forward and backward-data, only below 2 (which give each of a multiprocessor's
# four schedulers a warp): their partial outputs cost more memory traffic.
SPLIT_TARGET2 = 4
SPLIT_MIN_TILES2 = 2 if SIMULATOR else GPU_SPLIT_MIN_TILES
SPLIT_TARGET_FWD2 = 2
SPLIT_MIN_TILES_FWD2 = 2 if SIMULATOR else GPU_SPLIT_MIN_TILES

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
                ci, r = udivmod(k, khw)               # k = (ci, ki, kj)
                ki, kj = udivmod(r, kw)
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
                nb, s = udivmod(r, hw_o)
                v = gy[(nb * f + fo) * hw_o + s]
            sg[ty, tx] = v
            r = r0 + ty                               # X at window r, tap q
            v = zero
            if q < kk and r < rr:
                nb, s = udivmod(r, hw_o)
                oh_, ow_ = udivmod(s, wo)
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
                fi, t = udivmod(k, khw)
                ki, kj = udivmod(t, kw)
                a = hp - ki                           # = oh*sh when this tap is used
                b = wp - kj
                if a >= 0 and b >= 0:                 # checked first: % and // of non-negatives
                    oh_, ra = udivmod(a, sh)
                    ow_, rb = udivmod(b, sw)
                    if ra == 0 and rb == 0 and oh_ < ho and ow_ < wo:
                        v = gy[gy_base + (fi * ho + oh_) * wo + ow_]
            sg[ty, tx] = v
            k = k0 + tx                       # W[fi, co, ki, kj]: flat (fi*C + co)*KH*KW + t
            v = zero
            if co < c and k < kk:
                fi, t = udivmod(k, khw)
                v = w[(fi * c + co) * khw + t]
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


def _fwd_shapes(x, w, bias, stride, padding):
    """(dtype, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo) of a forward call, checked."""
    dt = _check(x, w, "conv2d_fwd")
    n, c, h, wd = (int(s) for s in x.shape)
    f, c2, _, _ = (int(s) for s in w.shape)
    assert c == c2, f"conv2d_fwd: input has {c} channels, weight {c2}"
    sh, sw, ph, pw, kh, kw = _geometry(stride, padding, w.shape[2:])
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    assert ho >= 1 and wo >= 1, f"conv2d_fwd: kernel {(kh, kw)} larger than padded input"
    assert bias is None or tuple(bias.shape) == (f,), f"conv2d_fwd: bias {bias.shape} is not ({f},)"
    assert bias is None or bias.dtype == x.dtype, f"conv2d_fwd: bias dtype {bias.dtype}"
    return dt, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo


def _bwd_shapes(grad_out, other, x_shape, w_shape, stride, padding, what):
    """(dtype, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo) of a backward call, checked."""
    dt = _check(grad_out, other, what)
    n, c, h, wd = (int(s) for s in x_shape)
    f, c2, _, _ = (int(s) for s in w_shape)
    assert c == c2, f"{what}: input has {c} channels, weight {c2}"
    sh, sw, ph, pw, kh, kw = _geometry(stride, padding, w_shape[2:])
    n2, f2, ho, wo = (int(s) for s in grad_out.shape)
    assert (n2, f2) == (n, f), f"{what}: grad_out {grad_out.shape} for x {tuple(x_shape)}"
    return dt, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo


def _split_k(blocks, k, tile=None, target=None, min_tiles=None, sms=None):
    """(splits, chunk): how many slices to cut a GEMM's K into, and each slice's length (a
    multiple of ``tile``), so that about ``target`` blocks per multiprocessor (``sms`` of them:
    this GPU's) run when the output alone gives too few, and each slice keeps at least
    ``min_tiles`` K-tiles. Defaults: v1's ``TILE``, ``SPLIT_TARGET``, ``SPLIT_MIN_TILES``."""
    tile = TILE if tile is None else tile
    target = SPLIT_TARGET if target is None else target
    min_tiles = SPLIT_MIN_TILES if min_tiles is None else min_tiles
    want = ceil_div(target * (multiprocessors() if sms is None else sms), max(blocks, 1))
    splits = max(1, min(want, ceil_div(k, tile) // min_tiles))
    chunk = ceil_div(ceil_div(max(k, 1), splits), tile) * tile
    return ceil_div(max(k, 1), chunk), chunk


# ---- version 1

def conv2d_fwd_v1(x, w, bias, stride, padding):
    """Cross-correlation as in PyTorch: x (N, C, H, W), w (F, C, KH, KW) -> (N, F, Ho, Wo)."""
    dt, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo = _fwd_shapes(x, w, bias, stride, padding)
    out = empty((n, f, ho, wo), x.dtype)
    has_bias = bias is not None
    bias_arr = flat(bias) if has_bias else placeholder(x.dtype)
    m = n * ho * wo
    if m and f:
        kernel = make_conv2d_fwd_kernel1(TILE, has_bias, dt)
        grid = (ceil_div(m, TILE), ceil_div(f, TILE))
        launch(kernel, grid, (TILE, TILE), flat(x), flat(w), bias_arr,
               out.reshape(-1), n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo)
    return out


def conv2d_bwd_weight_v1(grad_out, x, w_shape, stride, padding):
    """dL/dw (F, C, KH, KW) from grad_out (N, F, Ho, Wo) and the input x (N, C, H, W)."""
    dt, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo = _bwd_shapes(
        grad_out, x, x.shape, w_shape, stride, padding, "conv2d_bwd_weight")
    kk = c * kh * kw
    blocks = ceil_div(kk, TILE) * ceil_div(f, TILE)
    splits, chunk = _split_k(blocks, n * ho * wo)
    dw = empty((splits, f, c, kh, kw) if splits > 1 else (f, c, kh, kw), x.dtype)
    if f and kk:
        kernel = make_conv2d_bwd_weight_kernel1(TILE, dt)
        grid = (ceil_div(kk, TILE), ceil_div(f, TILE), splits)
        launch(kernel, grid, (TILE, TILE), flat(grad_out), flat(x), dw.reshape(-1),
               n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo, chunk)
    return _sum(dw, (0,), False) if splits > 1 else dw


def conv2d_bwd_data_v1(grad_out, w, x_shape, stride, padding):
    """dL/dx (N, C, H, W) from grad_out (N, F, Ho, Wo) and the weight w (F, C, KH, KW)."""
    dt, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo = _bwd_shapes(
        grad_out, w, x_shape, w.shape, stride, padding, "conv2d_bwd_data")
    dx = empty((n, c, h, wd), grad_out.dtype)
    m = n * h * wd
    if m and c:
        kernel = make_conv2d_bwd_data_kernel1(TILE, dt)
        grid = (ceil_div(m, TILE), ceil_div(c, TILE))
        launch(kernel, grid, (TILE, TILE), flat(grad_out), flat(w), dx.reshape(-1),
               n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo)
    return dx


# ---- version 2

def _u32(*values):
    """Sizes as the v2 kernels take them: uint32 (the launcher checks that they fit)."""
    assert all(0 <= v < 2 ** 31 for v in values), f"conv2d v2: sizes {values} need 64-bit offsets"
    return tuple(np.uint32(v) for v in values)


def _threads(tiles):
    bm, bn, tm, tn, _ = tiles
    return (bm // tm) * (bn // tn)


def _fwd_splits(tiles, n, cin, fout, kh, kw, ho, wo, sms=None, min_tiles=None):
    """(grid, splits, K-tiles per slice) of the v2 forward GEMM. Split-K when the output alone
    gives fewer than ``SPLIT_TARGET_FWD2`` blocks per multiprocessor (conv3's backward-data at
    batch 64: 98 blocks for 132 multiprocessors): slices of whole K-tiles, at least
    ``min_tiles`` (default ``SPLIT_MIN_TILES_FWD2``) each."""
    bm, bn, _, _, target = tiles
    chans, krows = _k_tile(kh, kw, target)
    k_tiles = ceil_div(cin, chans) * ceil_div(kh, krows)
    grid = (ceil_div(n * ho * wo, bn), ceil_div(fout, bm))
    splits, tps = _split_k(grid[0] * grid[1], k_tiles, 1, SPLIT_TARGET_FWD2,
                           SPLIT_MIN_TILES_FWD2 if min_tiles is None else min_tiles, sms)
    return grid, splits, tps


def _gemm_fwd2(x, w, bias, n, cin, h, wd, fout, kh, kw, sh, sw, ph, pw, ho, wo, flip):
    """The v2 forward GEMM: (N, fout, ho, wo) from x (N, cin, h, wd) and the filter w, read as
    (fout, cin, kh, kw), or with ``flip`` as the flipped transpose of (cin, fout, kh, kw);
    ``bias`` None or (fout,). Split-K slices are summed by ``reduce.sum``."""
    tiles = V2_TILES[x.dtype.name]["fwd"]
    has_bias = bias is not None
    kernel = make_conv2d_fwd_kernel2(tiles, kh, kw, flip, has_bias, _NUMBA_DTYPES[x.dtype])
    grid, splits, tps = _fwd_splits(tiles, n, cin, fout, kh, kw, ho, wo)
    out = empty((splits, n, fout, ho, wo) if splits > 1 else (n, fout, ho, wo), x.dtype)
    m, khw = n * ho * wo, kh * kw
    s_i, s_c = (khw, fout * khw) if flip else (cin * khw, khw)     # W offsets per row, channel
    _u32(x.size, w.size, out.size)
    if m and fout:
        launch(kernel, grid + (splits,), _threads(tiles), flat(x), flat(w),
               flat(bias) if has_bias else placeholder(x.dtype), out.reshape(-1),
               *_u32(cin, h, wd, fout, m, ho * wo, wo, sh, sw, ph, pw, s_i, s_c, tps))
    return _sum(out, (0,), False) if splits > 1 else out


def conv2d_fwd_v2(x, w, bias, stride, padding):
    """Forward, v2: the direct kernel for one input channel, the register-tiled GEMM else."""
    dt, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo = _fwd_shapes(x, w, bias, stride, padding)
    if c == 1:
        return direct.conv2d_fwd_direct(x, w, bias, (sh, sw), (ph, pw), ho, wo)
    return _gemm_fwd2(x, w, bias, n, c, h, wd, f, kh, kw, sh, sw, ph, pw, ho, wo, flip=False)


def conv2d_bwd_data_v2(grad_out, w, x_shape, stride, padding):
    """Backward-data, v2: the direct kernel for one input channel; at stride 1 (and padding
    below the filter size) the forward GEMM on dY with the flipped, transposed filter and
    padding KH-1-ph; v1's gather kernel else."""
    dt, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo = _bwd_shapes(
        grad_out, w, x_shape, w.shape, stride, padding, "conv2d_bwd_data")
    if c == 1:
        return direct.conv2d_bwd_data_direct(grad_out, w, (n, c, h, wd), (sh, sw), (ph, pw))
    if (sh, sw) != (1, 1) or ph >= kh or pw >= kw:
        return conv2d_bwd_data_v1(grad_out, w, x_shape, stride, padding)
    return _gemm_fwd2(grad_out, w, None, n, f, ho, wo, c, kh, kw, 1, 1, kh - 1 - ph, kw - 1 - pw,
                      h, wd, flip=True)


def conv2d_bwd_weight_v2(grad_out, x, w_shape, stride, padding):
    """Backward-weight, v2: the direct kernel for one input channel, the register-tiled GEMM
    with deterministic split-K else."""
    dt, n, c, h, wd, f, sh, sw, ph, pw, kh, kw, ho, wo = _bwd_shapes(
        grad_out, x, x.shape, w_shape, stride, padding, "conv2d_bwd_weight")
    if c == 1:
        return direct.conv2d_bwd_weight_direct(grad_out, x, (f, c, kh, kw), (sh, sw), (ph, pw))
    tiles = V2_TILES[x.dtype.name]["bwd_weight"]
    bm, bn, _, _, bk = tiles
    kk = c * kh * kw
    blocks = ceil_div(kk, bn) * ceil_div(f, bm)
    splits, chunk = _split_k(blocks, n * ho * wo, bk, SPLIT_TARGET2, SPLIT_MIN_TILES2)
    dw = empty((splits, f, c, kh, kw) if splits > 1 else (f, c, kh, kw), x.dtype)
    _u32(x.size, grad_out.size, dw.size)
    if f and kk:
        kernel = make_conv2d_bwd_weight_kernel2(tiles, kh, kw, dt)
        grid = (ceil_div(kk, bn), ceil_div(f, bm), splits)
        launch(kernel, grid, _threads(tiles), flat(grad_out), flat(x),
               dw.reshape(-1), *_u32(n, c, h, wd, f, ho, wo, sh, sw, ph, pw, chunk))
    return _sum(dw, (0,), False) if splits > 1 else dw


VERSIONS = {
    "v1": {"fwd": conv2d_fwd_v1, "bwd_data": conv2d_bwd_data_v1,
           "bwd_weight": conv2d_bwd_weight_v1},
    "v2": {"fwd": conv2d_fwd_v2, "bwd_data": conv2d_bwd_data_v2,
           "bwd_weight": conv2d_bwd_weight_v2},
}
DEFAULT_VERSION = "v2"
# The same table as the kernel registry (tilegrad.kernels) reads it: one family per pass.
KERNEL_FAMILIES = {f"conv2d_{p}": ({v: launchers[p] for v, launchers in VERSIONS.items()},
                                   DEFAULT_VERSION) for p in ("fwd", "bwd_data", "bwd_weight")}
# The kernels (PTX_SIGNATURES names) of a version not all named conv2d_<pass>_kernel<N>: v2 also
# runs the direct kernels (one input channel) and v1's backward-data gather (stride above 1).
VERSION_KERNELS = {"v2": ("kernel2", "direct_kernel", "conv2d_bwd_data_kernel1")}
conv2d_fwd = VERSIONS[DEFAULT_VERSION]["fwd"]
conv2d_bwd_data = VERSIONS[DEFAULT_VERSION]["bwd_data"]
conv2d_bwd_weight = VERSIONS[DEFAULT_VERSION]["bwd_weight"]

# ---------------------------------------------------------------- compile check

# The reference CNN's layers at batch 64 on Fashion-MNIST: (name, C, F, H = W); 3x3, pad 1.
CNN_LAYERS = (("conv1", 1, 64, 28), ("conv2", 64, 128, 14), ("conv3", 128, 256, 7))
CNN_BATCH, CNN_SMS = 64, 132


def _gemm_grids():
    """``{kernel name: [(label, grid blocks), ...]}``: the float32 GEMM kernels' grids at the
    reference CNN's shapes on 132 multiprocessors (v2 sends conv1, one input channel, to the
    direct kernels; backward-weight's grids include its split-K slices)."""
    grids = {}

    def add(name, label, blocks):
        grids.setdefault(name, []).append((label, blocks))

    t2, w2 = V2_GPU_TILES["float32"]["fwd"], V2_GPU_TILES["float32"]["bwd_weight"]
    for layer, c, f, hw in CNN_LAYERS:
        tag = f"N{CNN_BATCH} {c}->{f} {hw}x{hw}"
        m, kk = CNN_BATCH * hw * hw, c * 9
        add("conv2d_fwd_kernel1_float32_bias", f"{layer} fwd {tag}",
            ceil_div(m, GPU_TILE) * ceil_div(f, GPU_TILE))
        add("conv2d_bwd_data_kernel1_float32", f"{layer} bwd-data {tag}",
            ceil_div(m, GPU_TILE) * ceil_div(c, GPU_TILE))
        blocks = ceil_div(kk, GPU_TILE) * ceil_div(f, GPU_TILE)
        add("conv2d_bwd_weight_kernel1_float32", f"{layer} bwd-weight {tag}",
            blocks * _split_k(blocks, m, GPU_TILE, GPU_SPLIT_TARGET, GPU_SPLIT_MIN_TILES,
                              CNN_SMS)[0])
        if c == 1:
            continue
        for name, pass_, cin, fout in (("conv2d_fwd_kernel2_float32_3x3_bias", "fwd", c, f),
                                       ("conv2d_bwd_data_kernel2_float32_3x3", "bwd-data", f, c)):
            (gx, gy), splits, _ = _fwd_splits(t2, CNN_BATCH, cin, fout, 3, 3, hw, hw, CNN_SMS,
                                              GPU_SPLIT_MIN_TILES)
            add(name, f"{layer} {pass_} {tag}", gx * gy * splits)
        blocks = ceil_div(kk, w2[1]) * ceil_div(f, w2[0])
        add("conv2d_bwd_weight_kernel2_float32_3x3", f"{layer} bwd-weight {tag}",
            blocks * _split_k(blocks, m, w2[4], SPLIT_TARGET2, GPU_SPLIT_MIN_TILES, CNN_SMS)[0])
    return grids


def _signatures():
    """Every kernel the launchers make on a GPU, in float32 and float64: v1 (TILE 16) and v2
    (its GPU tiles, the reference CNN's 3x3 filter; the direct kernels for one input channel)."""
    sigs = []
    for dt in (float32, float64):
        arr, tiles = dt[::1], V2_GPU_TILES[str(dt)]
        sizes = (int64,) * 13               # n, c, h, w, f, kh, kw, sh, sw, ph, pw, ho, wo
        fwd2 = (arr,) * 4 + (uint32,) * 14  # cin h w fout m howo wo sh sw ph pw s_i s_c tps
        bww2 = (arr,) * 3 + (uint32,) * 12  # n, c, h, w, f, ho, wo, sh, sw, ph, pw, chunk
        sigs += [
            (f"conv2d_fwd_kernel1_{dt}", make_conv2d_fwd_kernel1(GPU_TILE, False, dt),
             (arr, arr, arr, arr) + sizes),
            (f"conv2d_fwd_kernel1_{dt}_bias", make_conv2d_fwd_kernel1(GPU_TILE, True, dt),
             (arr, arr, arr, arr) + sizes),
            (f"conv2d_bwd_weight_kernel1_{dt}", make_conv2d_bwd_weight_kernel1(GPU_TILE, dt),
             (arr, arr, arr) + sizes + (int64,)),
            (f"conv2d_bwd_data_kernel1_{dt}", make_conv2d_bwd_data_kernel1(GPU_TILE, dt),
             (arr, arr, arr) + sizes),
            (f"conv2d_fwd_kernel2_{dt}_3x3",
             make_conv2d_fwd_kernel2(tiles["fwd"], 3, 3, False, False, dt), fwd2),
            (f"conv2d_fwd_kernel2_{dt}_3x3_bias",
             make_conv2d_fwd_kernel2(tiles["fwd"], 3, 3, False, True, dt), fwd2),
            (f"conv2d_bwd_data_kernel2_{dt}_3x3",
             make_conv2d_fwd_kernel2(tiles["fwd"], 3, 3, True, False, dt), fwd2),
            (f"conv2d_bwd_weight_kernel2_{dt}_3x3",
             make_conv2d_bwd_weight_kernel2(tiles["bwd_weight"], 3, 3, dt), bww2),
        ]
    return sigs + direct.signatures(3, 3)


PTX_SIGNATURES = [] if SIMULATOR else _signatures()
LAUNCH_BLOCKS = {
    **{f"conv2d_{p}_kernel1_{dt}{b}": (GPU_TILE, GPU_TILE) for dt in ("float32", "float64")
       for p, b in (("fwd", ""), ("fwd", "_bias"), ("bwd_weight", ""), ("bwd_data", ""))},
    **{f"conv2d_{p}_kernel2_{dt}_3x3{b}": _threads(V2_GPU_TILES[dt][t])
       for dt in ("float32", "float64")
       for p, t, b in (("fwd", "fwd", ""), ("fwd", "fwd", "_bias"), ("bwd_data", "fwd", ""),
                       ("bwd_weight", "bwd_weight", ""))},
    **direct.launch_blocks(3, 3),
}
SASS_GEMM = _gemm_grids()
