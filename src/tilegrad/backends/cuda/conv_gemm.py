"""Convolution version 2: the register-tiled implicit-GEMM kernels (launched from ``conv.py``).

``conv.py``'s docstring describes the three passes as GEMMs, the versions, their costs and the
predicted speed; this file holds v2's kernel factories: ``make_conv2d_fwd_kernel2`` (forward, and
backward-data at stride 1 as the forward convolution of grad_out with the flipped filter) and
``make_conv2d_bwd_weight_kernel2``, with the device functions they share (the unsigned index
helpers, the unrolled K-tile and the 8 x 8 register tile).
"""
import functools

from numba import cuda, int64, uint32

# Indices are uint32 (``U``): Numba puts a signed index through a negative-index fix-up and
# widens it to 64 bits. Numba also widens uint32 arithmetic to 64 bits and types integer
# literals as int64 (int64 with a uint64 gives a float), so each result is narrowed back with
# U(...) and each constant is a U(...): the compiler then emits 32-bit integer code.
U = uint32


@cuda.jit(device=True)
def _wrap_sub(a, b):
    """``a - b`` modulo 2**32: one 32-bit subtraction on a GPU. (The simulator's uint32 is
    NumPy's, which warns when it wraps: there the difference is taken exactly, then masked.)
    An input coordinate ``i = padded - pad`` then checks as ``i < size`` alone: a negative
    one wraps to a huge value."""
    return U((int64(a) - int64(b)) & 0xFFFFFFFF)


@cuda.jit(device=True)
def _wrap_add(a, b):
    """``a + b`` modulo 2**32 (see ``_wrap_sub``): one 32-bit addition on a GPU."""
    return U((int64(a) + int64(b)) & 0xFFFFFFFF)


def _unrolled(n, step):
    """A device function ``f(p, args)`` calling ``step(p + i, args)`` for i = 0..n-1, written out.
    The compiler leaves ``for p in range(n)`` rolled when its body is long, and a rolled loop
    indexes the register arrays (accumulators, the staged tile) with a variable, which moves them
    to local memory; written out, every index is a constant."""
    if n == 1:
        return step
    first, second, h = _unrolled(n // 2, step), _unrolled(n - n // 2, step), U(n // 2)

    @cuda.jit(device=True)
    def unrolled(p, args):
        first(p, args)
        second(U(p + h), args)
    return unrolled


def _k_tile(kh, kw, target):
    """(channels, kernel rows) of one K-tile of the forward GEMM, whose K is (c, kh, kw): whole
    filters of ``channels`` channels when a filter has at most 2*target taps (BK = channels*KH*KW
    near ``target``), else ``rows`` kernel rows of one channel (BK = rows*KW)."""
    if kh * kw <= 2 * target:
        return max(1, round(target / (kh * kw))), kh
    return 1, max(1, target // kw)


@functools.lru_cache(maxsize=None)
def _register_tile(bm, bn, bk, tm, tn, dtype):
    """What every v2 GEMM kernel shares, for one tile configuration.

    A block of ``threads = (BM/TM) * (BN/TN)`` computes a BM x BN tile of the result, K-tile by
    K-tile. Shared memory holds two buffers of each operand's K-tile, ``sa[buf, k, row]`` (BK x
    BM) and ``sb[buf, k, col]`` (BK x BN). Thread ``tid`` stages columns ``tid + j*threads`` of
    each (``ca = BM/threads`` of A, ``cb`` of B), all BK k of them, from registers ``pa[j*BK +
    p]``: consecutive threads write consecutive banks. Thread (ty, tx) = (tid // (BN/TN), tid %
    (BN/TN)) owns TM x TN outputs as 2 x 2 quadrants: rows r0 + {0, BM/2} + 0..TM/2-1 with r0 =
    ty*TM/2, columns c0 + {0, BN/2} + 0..TN/2-1 with c0 = tx*TN/2, so that its fragment reads are
    runs of TM/2 (TN/2) consecutive, aligned elements (LDS.128) and a warp's reads of one k touch
    few distinct 16-byte words: no bank conflicts.

    Returns ``(threads, ca, cb, stage, ktile)``: ``stage(0, (sa, sb, buf, tid, pa, pb))`` stores
    the staged registers into buffer ``buf``; ``ktile(0, (sa, sb, buf, r0, c0, ra, rb, acc))``
    does the BK x TM x TN multiply-adds of buffer ``buf``."""
    threads = (bm // tm) * (bn // tn)
    assert tm % 2 == 0 and tn % 2 == 0
    assert bm % threads == 0 and bn % threads == 0, "each thread stages whole tile columns"
    ca, cb, hm, hn = bm // threads, bn // threads, tm // 2, tn // 2
    NT, BM2, BN2 = U(threads), U(bm // 2), U(bn // 2)

    @cuda.jit(device=True)
    def stage_one(p, args):
        sa, sb, buf, tid, pa, pb = args
        for j in range(ca):
            sa[buf, p, U(tid + U(j) * NT)] = pa[j * bk + p]
        for j in range(cb):
            sb[buf, p, U(tid + U(j) * NT)] = pb[j * bk + p]

    @cuda.jit(device=True)
    def mma_one(p, args):
        """k = p of the K-tile: TM + TN fragment reads, TM x TN multiply-adds."""
        sa, sb, buf, r0, c0, ra, rb, acc = args
        for j in range(hm):
            ra[j] = sa[buf, p, U(r0 + U(j))]
            ra[hm + j] = sa[buf, p, U(r0 + BM2 + U(j))]
        for j in range(hn):
            rb[j] = sb[buf, p, U(c0 + U(j))]
            rb[hn + j] = sb[buf, p, U(c0 + BN2 + U(j))]
        for r in range(tm):
            for s in range(tn):
                acc[r, s] += ra[r] * rb[s]

    return threads, ca, cb, _unrolled(bk, stage_one), _unrolled(bk, mma_one)


@functools.lru_cache(maxsize=None)
def make_conv2d_fwd_kernel2(tiles, kh, kw, flip, has_bias, dtype):
    """Forward (with ``flip``: backward-data at stride 1) as a register-tiled implicit GEMM,
    out[n, f, oh, ow] = sum over k = (c, kh, kw) of W[f, c, kh, kw] * X[n, c, oh*sh - ph + kh,
    ow*sw - pw + kw] (+ bias[f]).

    GEMM rows are output channels f (A = W, BM per block, blockIdx.y), columns output positions
    m = (n, oh, ow) (B = the im2col'd input, BN per block, blockIdx.x), K = C*KH*KW. ``tiles`` is
    (BM, BN, TM, TN, BK target). A K-tile is whole filters of a few channels (or a few kernel
    rows of one channel, for large filters; ``_k_tile``), so that within it every element's
    (channel offset, kh, kw) is a compile-time constant: each thread decodes its column's
    position once, into a row offset and masks of the kernel rows and columns that fall inside
    the input, and the K loop adds constants to it. No division, no per-element counters.

    ``flip``: W is read as W'[c, f, i, j] = W[f, c, KH-1-i, KW-1-j], i.e. with the tap
    reversed and the launcher's strides ``s_i`` (per GEMM row) and ``s_c`` (per channel) swapped;
    this kernel is then the backward-data of a stride-1 convolution (x = dY, out = dX)."""
    bm, bn, tm, tn, target = tiles
    chans, krows = _k_tile(kh, kw, target)
    bk = chans * krows * kw
    threads, ca, cb, stage, ktile = _register_tile(bm, bn, bk, tm, tn, dtype)
    split = krows < kh                  # a channel's filter spans several K-tiles
    zero = dtype(0)
    KH, KW, KHW, KR, CH, NT = U(kh), U(kw), U(kh * kw), U(krows), U(chans), U(threads)
    TPC = U(-(-kh // krows))            # K-tiles per channel
    BM, BN, NX = U(bm), U(bn), U(bn // tn)
    HM, HN, BM2, BN2 = U(tm // 2), U(tn // 2), U(bm // 2), U(bn // 2)
    hm, hn, la, lb, per_ch = tm // 2, tn // 2, ca * bk, cb * bk, krows * kw

    @cuda.jit(device=True)
    def fetch_one(p, args):
        """Element p of the K-tile, for this thread's A rows and B columns, into pa, pb."""
        x, w, pa, pb, xrow, rmask, cmask, wrow, amask, cleft, kh0, xc, wc, hw, wd, s_c = args
        cc = U(p // U(per_ch))                   # constants: channel, kernel row and column
        ki = U(U(p % U(per_ch)) // KW)
        kj = U(p % KW)
        if split:
            ki = U(kh0 + ki)
        live = cc < cleft and ki < KH            # (ki < KH: only the last rows of a split)
        # Offsets of this element from the thread's row of W and from its window's corner in
        # X: the same in every thread. (Each sum is narrowed on its own: a 64-bit partial sum
        # shared by several elements would stay 64-bit, and so would their addresses.)
        t = U(U(ki * KW) + kj)
        woff = U(U(cc * s_c) + (_wrap_sub(U(KHW - U(1)), t) if flip else t))
        xoff = U(U(cc * hw) + U(U(ki * wd) + kj))
        for j in range(ca):
            v = zero
            if live and (amask >> U(j)) & U(1):
                v = w[U(U(wrow[j] + wc) + woff)]
            pa[j * bk + p] = v
        for j in range(cb):
            v = zero
            if live and U(rmask[j] >> ki) & U(cmask[j] >> kj) & U(1):   # else padding: zero
                v = x[_wrap_add(xrow[j], U(xc + xoff))]
            pb[j * bk + p] = v

    fetch = _unrolled(bk, fetch_one)

    def conv2d_fwd_kernel2(x, w, bias, out, cin, h, wd, fout, mm, howo, wo, sh, sw, ph, pw,
                           s_i, s_c, tps):
        sa = cuda.shared.array((2, bk, bm), dtype, alignment=16)
        sb = cuda.shared.array((2, bk, bn), dtype, alignment=16)
        pa = cuda.local.array(la, dtype)          # the next K-tile, in flight
        pb = cuda.local.array(lb, dtype)
        acc = cuda.local.array((tm, tn), dtype)
        ra = cuda.local.array(tm, dtype)
        rb = cuda.local.array(tn, dtype)
        wrow = cuda.local.array(ca, U)
        xrow = cuda.local.array(cb, U)
        rmask = cuda.local.array(cb, U)
        cmask = cuda.local.array(cb, U)
        tid = U(cuda.threadIdx.x)
        r0, c0 = U((tid // NX) * HM), U((tid % NX) * HN)
        row0, col0 = U(U(cuda.blockIdx.y) * BM), U(U(cuda.blockIdx.x) * BN)
        hw = U(h * wd)
        # A: this thread stages rows (output channels) row0 + tid + j*threads of W.
        amask = U(0)
        for j in range(ca):
            i = U(row0 + tid + U(j) * NT)
            wrow[j] = U(i * s_i)
            if i < fout:
                amask |= U(U(1) << U(j))
        # B: and columns m = col0 + tid + j*threads = (n, oh, ow), decoded once. Tap (kh, kw)
        # reads input row oh*sh - ph + kh, column ow*sw - pw + kw, inside the input when bit
        # kh of rmask and bit kw of cmask are set; xrow is the offset of tap (0, 0) (modulo
        # 2**32: it can lie in the padding).
        for j in range(cb):
            m = U(col0 + tid + U(j) * NT)
            nb = U(m // howo)
            sp = U(m - nb * howo)
            oh = U(sp // wo)
            ohs, ows = U(oh * sh), U(U(sp - U(oh * wo)) * sw)   # in the padded input
            xrow[j] = _wrap_sub(U(U(U(nb * cin) * hw) + U(U(ohs * wd) + ows)), U(U(ph * wd) + pw))
            rm, cm = U(0), U(0)
            if m < mm:
                for i in range(kh):
                    if U(ohs + U(i)) >= ph and U(ohs + U(i)) < U(h + ph):
                        rm |= U(U(1) << U(i))
                for i in range(kw):
                    if U(ows + U(i)) >= pw and U(ows + U(i)) < U(wd + pw):
                        cm |= U(U(1) << U(i))
            rmask[j], cmask[j] = rm, cm
        for r in range(tm):
            for s in range(tn):
                acc[r, s] = zero
        # Step t fetches K-tile t into registers (its loads in flight), multiplies K-tile t-1
        # from shared buffer (t-1) % 2, then stores K-tile t into buffer t % 2, which was last
        # read in step t-1, before the barrier that ends it: one barrier per K-tile.
        # Split-K: slice z = blockIdx.z takes K-tiles [z*tps, z*tps + tps) and writes its partial
        # sums to out[z]. A channel's filter is ``TPC`` K-tiles (1 unless split).
        z = U(cuda.blockIdx.z)
        t0 = U(z * tps)
        tiles = min(U(U(U(U(U(cin + CH) - U(1)) // CH) * TPC) - t0), tps)
        c, kh0, t = U(U(t0 // TPC) * CH), U(U(t0 % TPC) * KR), U(0)
        while t <= tiles:
            if t < tiles:
                fetch(U(0), (x, w, pa, pb, xrow, rmask, cmask, wrow, amask, U(cin - c), kh0,
                             U(c * hw), U(c * s_c), hw, wd, s_c))
                kh0 = U(kh0 + KR)
                if not split or kh0 >= KH:
                    kh0 = U(0)
                    c = U(c + CH)
            if t > U(0):
                ktile(U(0), (sa, sb, U(U(t - U(1)) & U(1)), r0, c0, ra, rb, acc))
            if t < tiles:
                stage(U(0), (sa, sb, U(t & U(1)), tid, pa, pb))
            cuda.syncthreads()
            t = U(t + U(1))
        # Epilogue: out[z, n, f, oh, ow] at flat ((z*N + n)*F + f)*Ho*Wo + (oh*Wo + ow); the
        # bias goes into slice 0 only.
        obase = cuda.local.array(tn, U)
        for s in range(tn):
            m = U(col0 + c0 + U(s // hn) * BN2 + U(s % hn))
            nb = U(m // howo)
            obase[s] = U(U(U(U(z * mm) + U(nb * howo)) * fout) + U(m - U(nb * howo)))
        for r in range(tm):
            i = U(row0 + r0 + U(r // hm) * BM2 + U(r % hm))
            if i < fout:
                b = bias[i] if has_bias and z == U(0) else zero
                for s in range(tn):
                    if U(col0 + c0 + U(s // hn) * BN2 + U(s % hn)) < mm:
                        out[U(obase[s] + i * howo)] = acc[r, s] + b

    kernel = conv2d_fwd_kernel2     # named for what it computes
    kernel.__name__ = kernel.__qualname__ = "conv2d_bwd_data_kernel2" if flip else \
        "conv2d_fwd_kernel2"
    return cuda.jit(kernel)


@functools.lru_cache(maxsize=None)
def make_conv2d_bwd_weight_kernel2(tiles, kh, kw, dtype):
    """Backward-weight as a register-tiled implicit GEMM with split-K,
    dW[f, c, kh, kw] = sum over r = (n, oh, ow) of dY[n, f, oh, ow] * X[n, c, oh*sh - ph + kh,
    ow*sw - pw + kw].

    GEMM rows are output channels f (A = dY, blockIdx.y), columns taps q = (c, kh, kw) (B = the
    im2col'd input, blockIdx.x), K the output positions r of slice z = blockIdx.z, [z*chunk,
    z*chunk + chunk). Each thread decodes its tap once (divisions by the compile-time KH*KW and
    KW). What a position contributes to the addresses is the same for every thread: the block
    keeps it in a shared table, ``pos[buf, p]`` = (oh*sh, ow*sw, dY offset n*F*Ho*Wo + oh*Wo +
    ow, input offset n*C*H*W + oh*sh*W + ow*sw) for element p of a K-tile, double-buffered. Thread
    p < BK fills slot p of the next K-tile's table while the block computes this one, stepping
    its own counters (n, oh, ow) by BK with carries: no division in the K loop. Slice z writes
    its partial dW to dw[z]."""
    bm, bn, tm, tn, bk = tiles
    threads, ca, cb, stage, ktile = _register_tile(bm, bn, bk, tm, tn, dtype)
    assert bk <= threads
    zero = dtype(0)
    KW, KHW, NT = U(kw), U(kh * kw), U(threads)
    BM, BN, BK, NX = U(bm), U(bn), U(bk), U(bn // tn)
    HM, HN, BM2, BN2 = U(tm // 2), U(tn // 2), U(bm // 2), U(bn // 2)
    hm, hn, la, lb = tm // 2, tn // 2, ca * bk, cb * bk

    @cuda.jit(device=True)
    def fetch_one(p, args):
        """Position p of the K-tile, for this thread's A rows and B columns, into pa, pb."""
        gy, x, pa, pb, pos, buf, grow, amask, xq, qkh, qkw, bmask, rleft, h, wd = args
        ohs, ows, gyo, xo = pos[buf, p, 0], pos[buf, p, 1], pos[buf, p, 2], pos[buf, p, 3]
        live = p < rleft
        for j in range(ca):
            v = zero
            if live and (amask >> U(j)) & U(1):
                v = gy[U(grow[j] + gyo)]
            pa[j * bk + p] = v
        for j in range(cb):
            v = zero
            ih, iw = _wrap_add(ohs, qkh[j]), _wrap_add(ows, qkw[j])   # input row, column
            if live and (bmask >> U(j)) & U(1) and ih < h and iw < wd:   # else padding: zero
                v = x[_wrap_add(xo, xq[j])]
            pb[j * bk + p] = v

    fetch = _unrolled(bk, fetch_one)

    @cuda.jit
    def conv2d_bwd_weight_kernel2(gy, x, dw, n, cin, h, wd, fout, ho, wo, sh, sw, ph, pw,
                                  chunk):
        sa = cuda.shared.array((2, bk, bm), dtype, alignment=16)
        sb = cuda.shared.array((2, bk, bn), dtype, alignment=16)
        pos = cuda.shared.array((2, bk, 4), U, alignment=16)
        pa = cuda.local.array(la, dtype)
        pb = cuda.local.array(lb, dtype)
        acc = cuda.local.array((tm, tn), dtype)
        ra = cuda.local.array(tm, dtype)
        rb = cuda.local.array(tn, dtype)
        grow = cuda.local.array(ca, U)
        xq = cuda.local.array(cb, U)
        qkh = cuda.local.array(cb, U)
        qkw = cuda.local.array(cb, U)
        tid = U(cuda.threadIdx.x)
        r0, c0 = U((tid // NX) * HM), U((tid % NX) * HN)
        row0, col0, z = U(U(cuda.blockIdx.y) * BM), U(U(cuda.blockIdx.x) * BN), U(cuda.blockIdx.z)
        howo, hw, kk = U(ho * wo), U(h * wd), U(cin * KHW)
        # A: rows (output channels) row0 + tid + j*threads of dY.
        amask = U(0)
        for j in range(ca):
            i = U(row0 + tid + U(j) * NT)
            grow[j] = U(i * howo)
            if i < fout:
                amask |= U(U(1) << U(j))
        # B: columns (taps) q = (c, kh, kw), decoded once by constant divisions: the tap's
        # input row is oh*sh + (kh - ph), its offset from the position's (c*H*W + (kh - ph)*W
        # + kw - pw), both modulo 2**32 (negative in the padding).
        bmask = U(0)
        for j in range(cb):
            q = U(col0 + tid + U(j) * NT)
            c = U(q // KHW)
            t = U(q - U(c * KHW))
            ki = U(t // KW)
            kj = U(t - U(ki * KW))
            qkh[j], qkw[j] = _wrap_sub(ki, ph), _wrap_sub(kj, pw)
            xq[j] = _wrap_sub(U(U(c * hw) + U(U(ki * wd) + kj)), U(U(ph * wd) + pw))
            if q < kk:
                bmask |= U(U(1) << U(j))
        # K: this slice's positions r .. r_end - 1. Thread p < BK keeps position r + p of
        # the K-tile being fetched next: (n, oh, ow), decoded once here.
        r = U(z * chunk)
        r_end = min(U(n * howo), U(r + chunk))
        nb = U(U(r + tid) // howo)
        oh = U(U(U(r + tid) - U(nb * howo)) // wo)
        ow = U(U(U(r + tid) - U(nb * howo)) - U(oh * wo))
        fhw, chw = U(fout * howo), U(cin * hw)
        step_n = U(BK // howo)
        step_h = U(U(BK - U(step_n * howo)) // wo)
        step_w = U(U(BK - U(step_n * howo)) - U(step_h * wo))
        for a in range(tm):
            for b in range(tn):
                acc[a, b] = zero
        tiles = U(U(U(r_end - r) + BK - U(1)) // BK) if r < r_end else U(0)
        # Step u: threads p < BK write K-tile u's table (buffer u % 2); the block fetches K-tile
        # u-1 into registers using its table (written in step u-1), multiplies K-tile u-2
        # (staged in step u-1), and stages K-tile u-1. Each buffer a step writes was last read
        # in the step before, ahead of the barrier that ends it: one barrier per step.
        u = U(0)
        while u <= U(tiles + U(1)):
            if u < tiles and tid < BK:
                ohs, ows = U(oh * sh), U(ow * sw)
                pos[u & U(1), tid, 0], pos[u & U(1), tid, 1] = ohs, ows
                pos[u & U(1), tid, 2] = U(U(U(nb * fhw) + U(oh * wo)) + ow)
                pos[u & U(1), tid, 3] = U(U(nb * chw) + U(U(ohs * wd) + ows))
                # This thread's next position, r + BK: BK = (step_n images, step_h rows,
                # step_w columns), added with the carries (decoded once, above).
                ow, oh, nb = U(ow + step_w), U(oh + step_h), U(nb + step_n)
                if ow >= wo:
                    ow, oh = U(ow - wo), U(oh + U(1))
                if oh >= ho:
                    oh, nb = U(oh - ho), U(nb + U(1))
            if u >= U(1) and u <= tiles:
                t = U(u - U(1))
                fetch(U(0), (gy, x, pa, pb, pos, U(t & U(1)), grow, amask, xq, qkh, qkw, bmask,
                             U(r_end - U(r + U(t * BK))), h, wd))
            if u >= U(2):
                ktile(U(0), (sa, sb, U(u & U(1)), r0, c0, ra, rb, acc))      # K-tile u-2
            if u >= U(1) and u <= tiles:
                stage(U(0), (sa, sb, U(U(u - U(1)) & U(1)), tid, pa, pb))
            cuda.syncthreads()
            u = U(u + U(1))
        for a in range(tm):
            i = U(row0 + r0 + U(a // hm) * BM2 + U(a % hm))
            if i < fout:
                for b in range(tn):
                    q = U(col0 + c0 + U(b // hn) * BN2 + U(b % hn))
                    if q < kk:
                        dw[U(U(U(z * fout) + i) * kk) + q] = acc[a, b]   # dW[z, f, c, kh, kw]
    return conv2d_bwd_weight_kernel2


