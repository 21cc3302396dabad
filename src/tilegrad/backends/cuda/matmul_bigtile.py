"""Matmul v5 and v6: the big-tile kernels of the matmul ladder (launched from ``matmul.py``).

What each adds (v1-v4 are in ``matmul.py``):

v5  v4's double-buffered register tiling, rebuilt for what the compiler makes of it:
    - a 128 x 128 block tile, BK = 8, 256 threads, 8 x 8 outputs per thread held as four 4 x 4
      quadrants (rows ty*4.. and BM/2 + ty*4.., columns likewise), so that a quarter-warp's
      shared reads are 8 consecutive 16-byte words: conflict-free ``LDS.128``;
    - unsigned 32-bit index arithmetic (``uint32``): Numba's signed indices go through a
      negative-index fix-up and 64-bit widening on every access, unsigned ones do not;
    - the inner k loop unrolled in the source (eight calls of one ``step`` device function), so
      the K-tile loop is straight-line FFMAs and loads with no loop control;
    - 128-bit global loads and stores (``vector.load_vec``/``store_vec``: ``LDG.E.128``,
      ``STG.E.128``) and 16-byte-aligned shared arrays, on the "vector path". The launcher takes it
      when every row of A, B and C starts 16-byte aligned (aligned base pointers, leading
      dimensions a multiple of 16 bytes); otherwise it makes the same kernel with scalar,
      predicated loads ("scalar path"): offset views, odd K, odd N.
    - split-K, in one launch: ``blockIdx.z`` is (batch, slice); a slice computes its ``chunk``
      of K and writes a partial product, then counts itself in with an atomic add on its output
      tile's counter; the block that counts the last slice adds all the partials in slice
      order (so the result does not depend on which block finishes last: deterministic),
      applies the epilogue and resets the counter. Used for narrow GEMMs whose output alone
      gives too few blocks; a second kernel to sum the slices would cost a launch (~17 us of
      host time on the H200, more than such a GEMM's arithmetic).
v6  warp tiling: the same kernel with the block tile cut into warp tiles (64 x 32 for a
    128 x 128 block: 2 x 4 warps), each warp's 32 lanes covering its warp tile as 8 x 4 lanes of
    2 x 2 quadrants of 4 x 4. A warp's shared reads then touch 8 distinct 16-byte words of A and 4
    of B per k (one wavefront each) where v5's touch 2 and 16 (one and two wavefronts), and BK = 16
    halves the barriers and the loop overhead per FLOP.

v5 is v6 with one warp tile covering the block (``wm = bm``, ``wn = bn``): the factory is shared
and only the thread-to-output map and BK differ. Tile sizes, transpositions, the epilogue, the
vector path and the dtype are compile-time constants (one compiled kernel per combination).

Costs (float32): FLOPs 2*M*N*K; global loads 4*M*N*K*(1/BM + 1/BN) bytes (each A tile is read
by N/BN blocks, each B tile by M/BM), 64 KB per 128 x 128 x 8 K-tile step of 1 MFLOP per block.
Shared memory: 2 buffers x BK x (BM + BN + 8) x 4 bytes (16.9 KB at BK 8, 33.8 KB at BK 16).
What the compiler makes of them, and the speed that predicts, is in ``bench/RESULTS.md`` and the
SASS report (``python -m tilegrad.backends.cuda.sass --family matmul``).
"""
import functools

from numba import cuda, int32, uint32

from .common import epilogue
from .vector import load_l2, load_vec, store_vec

U = uint32
PAD = 4        # shared row padding (elements): transposed stores of A hit distinct banks


def _loaders(rows, bk, vw, threads, vec, zero):
    """Device functions staging one operand's K-tile: ``fetch`` global -> registers,
    ``store`` registers -> shared ``s[buf, k, row]`` (k-major, as the inner loop reads it).

    Two stored layouts: "k-contiguous" (rows of the tile are the block dimension, k runs along
    memory: A, or B transposed; leading dimension K) and "row-contiguous" (rows are k, the block
    dimension runs along memory: A transposed, or B; leading dimension M or N). Each thread moves
    ``nv`` vectors of ``vw`` elements per tile: vector e of the tile is element tid + q*threads.
    Out-of-range elements load as zero, so the inner loop needs no bounds checks."""
    nv = rows * bk // (vw * threads)
    assert nv * vw * threads == rows * bk, (rows, bk, vw, threads)
    THREADS, VW = U(threads), U(vw)
    k_vecs, r_vecs = U(bk // vw), U(rows // vw)   # vectors along one tile row, per layout

    @cuda.jit(device=True)
    def gather(x, base, inside, pos, end, regs, at):
        """x[base : base+vw] into regs[at : at+vw], zeros outside the operand: ``inside`` says
        whether the vector's row exists, ``pos < end`` whether its first element does along
        the contiguous dimension. On the vector path that dimension is a multiple of vw, so a
        vector is all in or all out: one 128-bit load."""
        if vec:
            if inside and pos < end:
                v = load_vec(x, base, vw)
                for j in range(vw):
                    regs[at + j] = v[j]
            else:
                for j in range(vw):
                    regs[at + j] = zero
        else:
            for j in range(vw):
                regs[at + j] = x[base + U(j)] if inside and pos + U(j) < end else zero

    @cuda.jit(device=True)
    def fetch_kcontig(x, off, row0, k0, dim, kend, ld, tid, regs):
        for q in range(nv):
            e = tid + U(q) * THREADS
            row = row0 + e // k_vecs
            kq = k0 + (e % k_vecs) * VW
            gather(x, off + row * ld + kq, row < dim, kq, kend, regs, q * vw)

    @cuda.jit(device=True)
    def store_kcontig(s, buf, tid, regs):
        for q in range(nv):
            e = tid + U(q) * THREADS
            r = e // k_vecs
            kq = (e % k_vecs) * VW
            for j in range(vw):          # a transposing store: vw scalar STS
                s[buf, kq + U(j), r] = regs[q * vw + j]

    @cuda.jit(device=True)
    def fetch_rcontig(x, off, row0, k0, dim, kend, ld, tid, regs):
        for q in range(nv):
            e = tid + U(q) * THREADS
            kp = k0 + e // r_vecs
            row = row0 + (e % r_vecs) * VW
            gather(x, off + kp * ld + row, kp < kend, row, dim, regs, q * vw)

    @cuda.jit(device=True)
    def store_rcontig(s, buf, tid, regs):
        for q in range(nv):
            e = tid + U(q) * THREADS
            p = e // r_vecs
            r = (e % r_vecs) * VW
            for j in range(vw):          # adjacent, aligned: one STS.128
                s[buf, p, r + U(j)] = regs[q * vw + j]

    return (fetch_kcontig, store_kcontig), (fetch_rcontig, store_rcontig), nv * vw


def _stores(vw, vec, has_bias, relu, zero):
    """Device function writing one thread's 4 adjacent outputs of a row (+ bias, ReLU)."""
    finish = epilogue(has_bias, relu, zero)

    if vw == 4:   # n is a multiple of 4 on the vector path: all four columns in, or all out
        @cuda.jit(device=True)
        def put4(c, at, j, n, bias, v0, v1, v2, v3):
            if j < n:
                store_vec(c, at, (finish(v0, bias, j), finish(v1, bias, j + U(1)),
                                  finish(v2, bias, j + U(2)), finish(v3, bias, j + U(3))))
    else:         # float64: n is a multiple of 2 only, so the second pair may lie past the end
        @cuda.jit(device=True)
        def put4(c, at, j, n, bias, v0, v1, v2, v3):
            if j < n:
                store_vec(c, at, (finish(v0, bias, j), finish(v1, bias, j + U(1))))
            if j + U(2) < n:
                store_vec(c, at + U(2), (finish(v2, bias, j + U(2)), finish(v3, bias, j + U(3))))

    @cuda.jit(device=True)
    def store4(c, at, j, n, bias, v0, v1, v2, v3):
        if vec:                          # bias[j] is read only where column j exists
            put4(c, at, j, n, bias, v0, v1, v2, v3)
        else:
            if j < n:
                c[at] = finish(v0, bias, j)
            if j + U(1) < n:
                c[at + U(1)] = finish(v1, bias, j + U(1))
            if j + U(2) < n:
                c[at + U(2)] = finish(v2, bias, j + U(2))
            if j + U(3) < n:
                c[at + U(3)] = finish(v3, bias, j + U(3))
    return store4, finish


@functools.lru_cache(maxsize=None)
def make_bigtile_kernel(name, bm, bn, bk, wm, wn, trans_a, trans_b, has_bias, relu, vec, dtype,
                        split=False):
    """The v5/v6 kernel: block tile ``bm x bn``, K-tile ``bk``, warp tile ``wm x wn`` (v5:
    ``wm, wn = bm, bn``), 8 x 8 outputs per thread; ``bm*bn/64`` threads.

    Thread ``tid`` is lane ``tid % lanes`` of warp tile ``tid // lanes`` (``lanes`` = wm*wn/64;
    32 for v6 on a GPU). Warp tiles are laid row-major over the block; a warp tile's lanes are
    laid (wm/8) x (wn/8), and lane (lr, lc) owns rows {0, wm/2} + lr*4 + 0..3 and columns
    {0, wn/2} + lc*4 + 0..3 of its warp tile: 2 x 2 quadrants of 4 x 4.

    ``split``: the split-K kernel (``blockIdx.z`` = batch x slice; partial products, then the
    last slice of each output tile sums them). A kernel of its own, so that the others carry
    none of its code or registers."""
    itemsize = dtype.bitwidth // 8
    vw = 16 // itemsize                    # elements per 128-bit vector: 4 float32, 2 float64
    threads = bm * bn // 64
    lanes = (wm // 8) * (wn // 8)
    assert bk in (8, 16) and bm % wm == 0 and bn % wn == 0 and wm % 8 == 0 and wn % 8 == 0
    zero = dtype(0)
    kcontig_a, rcontig_a, la = _loaders(bm, bk, vw, threads, vec, zero)
    kcontig_b, rcontig_b, lb = _loaders(bn, bk, vw, threads, vec, zero)
    fetch_a, store_a = rcontig_a if trans_a else kcontig_a
    fetch_b, store_b = kcontig_b if trans_b else rcontig_b
    store4, finish = _stores(vw, vec, has_bias, relu, zero)
    store4_raw, _ = _stores(vw, vec, False, False, zero)       # split-K's partials
    acols, bcols = bm + PAD, bn + PAD
    BM, BN, BK, LANES = U(bm), U(bn), U(bk), U(lanes)
    WM, WN, HWM, HWN = U(wm), U(wn), U(wm // 2), U(wn // 2)
    LANES_N, WARPS_N = U(wn // 8), U(bn // wn)

    @cuda.jit(device=True)
    def step(sa, sb, buf, p, r0, c0, ra, rb, acc):
        """One k of the K-tile: 2 x 2 LDS.128 of fragments, 64 FMAs."""
        for j in range(4):
            ra[j] = sa[buf, p, r0 + U(j)]
            ra[4 + j] = sa[buf, p, r0 + HWM + U(j)]
            rb[j] = sb[buf, p, c0 + U(j)]
            rb[4 + j] = sb[buf, p, c0 + HWN + U(j)]
        for r in range(8):
            for s in range(8):
                acc[r, s] += ra[r] * rb[s]

    @cuda.jit(device=True)
    def steps8(sa, sb, buf, p, r0, c0, ra, rb, acc):
        """Eight k, written out: the K-tile is straight-line code with constant offsets."""
        step(sa, sb, buf, p, r0, c0, ra, rb, acc)
        step(sa, sb, buf, p + U(1), r0, c0, ra, rb, acc)
        step(sa, sb, buf, p + U(2), r0, c0, ra, rb, acc)
        step(sa, sb, buf, p + U(3), r0, c0, ra, rb, acc)
        step(sa, sb, buf, p + U(4), r0, c0, ra, rb, acc)
        step(sa, sb, buf, p + U(5), r0, c0, ra, rb, acc)
        step(sa, sb, buf, p + U(6), r0, c0, ra, rb, acc)
        step(sa, sb, buf, p + U(7), r0, c0, ra, rb, acc)

    if bk == 8:
        @cuda.jit(device=True)
        def ktile(sa, sb, buf, r0, c0, ra, rb, acc):
            steps8(sa, sb, buf, U(0), r0, c0, ra, rb, acc)
    else:       # a loop over p would not be unrolled by the compiler: write both halves
        @cuda.jit(device=True)
        def ktile(sa, sb, buf, r0, c0, ra, rb, acc):
            steps8(sa, sb, buf, U(0), r0, c0, ra, rb, acc)
            steps8(sa, sb, buf, U(8), r0, c0, ra, rb, acc)

    def kernel(a, b, bias, c, part, counters, a_off, b_off, m_, n_, k_, chunk_, splits_):
        m, n, kk, chunk, splits = U(m_), U(n_), U(k_), U(chunk_), U(splits_)
        last_count = int32(splits_ - 1)
        sa = cuda.shared.array((2, bk, acols), dtype, alignment=16)
        sb = cuda.shared.array((2, bk, bcols), dtype, alignment=16)
        pa = cuda.local.array(la, dtype)          # the next K-tile, in flight
        pb = cuda.local.array(lb, dtype)
        acc = cuda.local.array((8, 8), dtype)
        ra = cuda.local.array(8, dtype)
        rb = cuda.local.array(8, dtype)
        tid = U(cuda.threadIdx.x)
        warp, lane = tid // LANES, tid % LANES
        r0 = (warp // WARPS_N) * WM + (lane // LANES_N) * U(4)   # first row of quadrant 0
        c0 = (warp % WARPS_N) * WN + (lane % LANES_N) * U(4)     # first column of quadrant 0
        row0, col0 = U(cuda.blockIdx.y) * BM, U(cuda.blockIdx.x) * BN
        zs = U(cuda.blockIdx.z)
        batch, piece = zs // splits, zs % splits                 # split-K slice of this block
        kbeg = piece * chunk
        kend = min(kk, kbeg + chunk)
        ao, bo = U(a_off[batch]), U(b_off[batch])
        lda = m if trans_a else kk
        ldb = kk if trans_b else n
        for r in range(8):
            for s in range(8):
                acc[r, s] = zero
        fetch_a(a, ao, row0, kbeg, m, kend, lda, tid, pa)
        fetch_b(b, bo, col0, kbeg, n, kend, ldb, tid, pb)
        store_a(sa, U(0), tid, pa)
        store_b(sb, U(0), tid, pb)
        cuda.syncthreads()
        buf = U(0)
        for k0 in range(kbeg + BK, kend + BK, BK):     # k0: the K-tile after this one
            if k0 < kend:      # issue its loads now; they complete during the arithmetic
                fetch_a(a, ao, row0, k0, m, kend, lda, tid, pa)
                fetch_b(b, bo, col0, k0, n, kend, ldb, tid, pb)
            ktile(sa, sb, buf, r0, c0, ra, rb, acc)
            if k0 < kend:
                # The other buffer was last read in the previous K-tile, before the last barrier.
                store_a(sa, U(1) - buf, tid, pa)
                store_b(sb, U(1) - buf, tid, pb)
            cuda.syncthreads()
            buf = U(1) - buf
        if not split:            # a compile-time constant: one kernel or the other
            for r in range(8):
                i = row0 + r0 + U(r // 4) * HWM + U(r % 4)
                if i < m:
                    for h in range(2):
                        j = col0 + c0 + U(h) * HWN
                        store4(c, (batch * m + i) * n + j, j, n, bias, acc[r, 4 * h],
                               acc[r, 4 * h + 1], acc[r, 4 * h + 2], acc[r, 4 * h + 3])
            return
        # Split-K: write this slice's partial product to slab zs = (batch, slice) of `part`,
        # then count the slice in. The block that counts the tile's last slice adds every
        # slice's partial in slice order (whichever block that is, the sum is the same: the
        # result is deterministic), applies the epilogue, and sets the counter back to zero
        # for the next launch. One launch instead of a GEMM and a sum kernel.
        for r in range(8):
            i = row0 + r0 + U(r // 4) * HWM + U(r % 4)
            if i < m:
                for h in range(2):
                    j = col0 + c0 + U(h) * HWN
                    store4_raw(part, (zs * m + i) * n + j, j, n, bias, acc[r, 4 * h],
                               acc[r, 4 * h + 1], acc[r, 4 * h + 2], acc[r, 4 * h + 3])
        last = cuda.shared.array(1, int32)
        cuda.threadfence()       # this thread's partial is visible to every block before...
        cuda.syncthreads()       # ...thread 0 counts the block's slice in
        tile = (batch * U(cuda.gridDim.y) + U(cuda.blockIdx.y)) * U(cuda.gridDim.x) + \
            U(cuda.blockIdx.x)
        if tid == U(0):
            last[0] = 1 if cuda.atomic.add(counters, tile, int32(1)) == last_count else 0
        cuda.syncthreads()
        if last[0] == 0:
            return
        cuda.threadfence()
        for r in range(8):
            i = row0 + r0 + U(r // 4) * HWM + U(r % 4)
            for h in range(2):
                for s in range(4):
                    j = col0 + c0 + U(h) * HWN + U(s)
                    if i < m and j < n:
                        v = zero
                        for q in range(splits):      # L2 loads: never a stale L1 line
                            v += load_l2(part, ((batch * splits + U(q)) * m + i) * n + j)
                        c[(batch * m + i) * n + j] = finish(v, bias, j)
        if tid == U(0):
            counters[tile] = 0

    kernel.__name__ = kernel.__qualname__ = name + ("_splitk" if split else "")
    # With no register cap ptxas keeps the 64 accumulators, 16 fragments and the in-flight tile
    # in registers without spilling; a cap of 128 (two blocks per SM) made it spill.
    return cuda.jit(kernel)


def make_matmul_kernel5(bm, bn, bk, trans_a, trans_b, has_bias, relu, vec, dtype):
    """v5: one warp tile covers the block (the quadrant layout over all its threads)."""
    return make_bigtile_kernel("matmul_kernel5", bm, bn, bk, bm, bn, trans_a, trans_b, has_bias,
                               relu, vec, dtype)


def make_matmul_kernel6(bm, bn, bk, wm, wn, trans_a, trans_b, has_bias, relu, vec, dtype):
    """v6: warp tiles of ``wm x wn`` (64 x 32 on a GPU, 32 lanes each)."""
    return make_bigtile_kernel("matmul_kernel6", bm, bn, bk, wm, wn, trans_a, trans_b, has_bias,
                               relu, vec, dtype)
